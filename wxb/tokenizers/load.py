"""``load_tokenizer(folder)``: pick the tokenizer class from the files a folder holds.

A folder saved by wxb names its class in ``tokenizer_config.json`` (``wxb_tokenizer``). A
folder from elsewhere is recognised by its files, as ``transformers`` would read it:
``tokenizer.json`` (any model, through the tokenizers library; a T5 one, named so by
``tokenizer_class``, as wxb's T5Tokenizer), else ``spiece.model`` (T5's SentencePiece model,
converted as transformers converts it), else ``vocab.txt`` (BERT WordPiece), else
``vocab.json`` + ``merges.txt`` (GPT-2 BPE). A ``.gguf`` file, or a folder holding one and no
tokenizer files, gives the tokenizer stored in its metadata.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from wxb.errors import DataError
from wxb.tokenizers.base import Tokenizer, read_tokenizer_config

# transformers' tokenizer classes (less "Fast") that are T5's: a Unigram model with sentinels.
T5_CLASSES = ("T5Tokenizer", "MT5Tokenizer")
# kind -> (module, class); modules load on first use (jieba, OpenCC are slow to import).
KINDS = {
    "hf": ("wxb.tokenizers.hf", "HFTokenizer"),
    "t5": ("wxb.tokenizers.sentencepiece", "T5Tokenizer"),
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
    from wxb.tokenizers.gguf import PACKAGED_GGUF

    if str(folder) in PACKAGED_GGUF or Path(folder).suffix.lower() == ".gguf":
        from wxb.tokenizers.gguf import load_gguf_tokenizer

        return load_gguf_tokenizer(folder)
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"tokenizer folder {folder} does not exist")
    config = read_tokenizer_config(folder)
    if "wxb_tokenizer" in config:
        return tokenizer_class(config["wxb_tokenizer"]).load(folder)
    hf_class = str(config.get("tokenizer_class", "")).removesuffix("Fast")
    if (folder / "tokenizer.json").is_file():
        from wxb.tokenizers.hf import options_from_hf_config

        # Older T5 folders name no class, but only T5's tokenizers take extra_ids.
        t5 = hf_class in T5_CLASSES or (not hf_class and "extra_ids" in config)
        cls = tokenizer_class("t5" if t5 else "hf")
        return cls.from_file(folder / "tokenizer.json", **options_from_hf_config(config))
    if (folder / "spiece.model").is_file():
        return _load_spiece(folder, config, hf_class)
    if (folder / "vocab.txt").is_file():
        return tokenizer_class("wordpiece").load(folder)
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return tokenizer_class("bpe").load(folder)
    from wxb.tokenizers.gguf import find_gguf, load_gguf_tokenizer

    if find_gguf(folder):
        return load_gguf_tokenizer(folder)
    raise DataError(f"{folder} holds no tokenizer: expected tokenizer.json, spiece.model, "
                    "vocab.txt, vocab.json with merges.txt, or one .gguf file")


def _load_spiece(folder: Path, config: dict, hf_class: str) -> Tokenizer:
    """The original T5 layout: ``spiece.model`` + a tokenizer_config.json with ``extra_ids``."""
    from wxb.tokenizers.hf import options_from_hf_config
    from wxb.tokenizers.sentencepiece import T5Tokenizer

    if hf_class and hf_class not in T5_CLASSES:
        raise DataError(f"{folder} holds spiece.model for a {config['tokenizer_class']}; wxb "
                        "reads spiece.model as T5's only (give a tokenizer.json for others)")
    extra_ids = config.get("extra_ids", 100)
    if not isinstance(extra_ids, int) or extra_ids < 0:
        raise DataError(f"{folder / 'tokenizer_config.json'}: extra_ids must be a whole "
                        f"number >= 0, got {extra_ids!r}")
    return T5Tokenizer.from_sentencepiece(folder / "spiece.model", extra_ids=extra_ids,
                                          **options_from_hf_config(config))
