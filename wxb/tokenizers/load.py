"""``load_tokenizer(folder)``: pick the tokenizer class from the files a folder holds.

A folder saved by wxb names its class in ``tokenizer_config.json`` (``wxb_tokenizer``). A
folder from elsewhere is recognised by its files, as ``transformers`` would read it:
``tokenizer.json`` (any model, through the tokenizers library), else ``vocab.txt`` (BERT
WordPiece), else ``vocab.json`` + ``merges.txt`` (GPT-2 BPE). A ``.gguf`` file, or a folder
holding one and no tokenizer files, gives the tokenizer stored in its metadata.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from wxb.errors import DataError
from wxb.tokenizers.base import Tokenizer, read_tokenizer_config

# kind -> (module, class); modules load on first use (jieba, OpenCC are slow to import).
KINDS = {
    "hf": ("wxb.tokenizers.hf", "HFTokenizer"),
    "bpe": ("wxb.tokenizers.bpe", "BPETokenizer"),
    "wordpiece": ("wxb.tokenizers.wordpiece", "WordPieceTokenizer"),
    "char": ("wxb.tokenizers.char", "CharTokenizer"),
    "word": ("wxb.tokenizers.word", "WordTokenizer"),
}


def tokenizer_class(kind: str) -> type[Tokenizer]:
    if kind not in KINDS:
        raise DataError(f"unknown tokenizer kind {kind!r}; known: {', '.join(KINDS)}")
    module, name = KINDS[kind]
    return getattr(importlib.import_module(module), name)


def load_tokenizer(folder: str | Path) -> Tokenizer:
    """Load the tokenizer saved in ``folder`` (by wxb or by Hugging Face tools), or the one a
    GGUF file carries."""
    folder = Path(folder)
    if folder.suffix.lower() == ".gguf":
        from wxb.tokenizers.gguf import load_gguf_tokenizer

        return load_gguf_tokenizer(folder)
    if not folder.is_dir():
        raise DataError(f"tokenizer folder {folder} does not exist")
    config = read_tokenizer_config(folder)
    if "wxb_tokenizer" in config:
        return tokenizer_class(config["wxb_tokenizer"]).load(folder)
    if (folder / "tokenizer.json").is_file():
        from wxb.tokenizers.hf import HFTokenizer, options_from_hf_config

        return HFTokenizer.from_file(folder / "tokenizer.json", **options_from_hf_config(config))
    if (folder / "vocab.txt").is_file():
        return tokenizer_class("wordpiece").load(folder)
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return tokenizer_class("bpe").load(folder)
    from wxb.tokenizers.gguf import find_gguf, load_gguf_tokenizer

    if find_gguf(folder):
        return load_gguf_tokenizer(folder)
    raise DataError(f"{folder} holds no tokenizer: expected tokenizer.json, vocab.txt, "
                    "vocab.json with merges.txt, or one .gguf file")
