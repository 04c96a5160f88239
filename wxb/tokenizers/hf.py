"""Any Hugging Face ``tokenizer.json``, through the ``tokenizers`` library (the fast path).

The library does the splitting into ids (Rust, multi-threaded over a batch); the wxb base class
does the rest (templates, truncation, padding) the same way for every tokenizer. The special
tokens that wrap a sequence are read from the file's post-processor, so ``[CLS] $A [SEP]`` (BERT)
and ``<|begin_of_text|> $A`` (Llama-3) come out as ``transformers`` produces them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wxb.errors import DataError
from wxb.io import atomic_save
from wxb.tokenizers.base import SPECIAL_NAMES, Offsets, Tokenizer

TOKENIZER_FILE = "tokenizer.json"
# BatchEncoding key -> attribute of a tokenizers.Encoding
ENCODING_FIELDS = {"input_ids": "ids", "token_type_ids": "type_ids",
                   "attention_mask": "attention_mask", "offset_mapping": "offsets",
                   "special_tokens_mask": "special_tokens_mask"}
# transformers classes whose models take token_type_ids (so their tokenizers return them).
SEGMENT_AWARE = {"BertTokenizer", "ElectraTokenizer", "AlbertTokenizer", "XLNetTokenizer",
                 "FunnelTokenizer", "LayoutLMTokenizer", "MobileBertTokenizer"}


class HFTokenizer(Tokenizer):
    """Wraps a ``tokenizers.Tokenizer``; ``HFTokenizer.from_file("tokenizer.json")``."""

    kind = "hf"

    def __init__(self, backend: Any, *, clean_up_tokenization_spaces: bool = False,
                 **kwargs: Any) -> None:
        kwargs.setdefault("template", template_from_post_processor(
            json.loads(backend.to_str()).get("post_processor")))
        super().__init__(**kwargs)
        # A tokenizer.json may carry fixed padding/truncation; the base class does both per call.
        backend.no_padding()
        backend.no_truncation()
        self.backend = backend
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self._check_special_tokens()

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> HFTokenizer:
        from tokenizers import Tokenizer as Backend

        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path} does not exist; give a Hugging Face tokenizer.json")
        try:
            backend = Backend.from_file(str(path))
        except Exception as err:  # the Rust loader reports every problem as one exception
            detail = " ".join(str(err).split())[:160]
            raise DataError(f"{path} is not a tokenizer.json the tokenizers library can load "
                            f"({detail})") from None
        return cls(backend, **kwargs)

    # ---------------------------------------------------------------- the hooks

    def _encode_text(self, text: str) -> tuple[list[int], Offsets]:
        return self._encode_texts([text])[0]

    def _encode_texts(self, texts: Sequence[str]) -> list[tuple[list[int], Offsets]]:
        encodings = self.backend.encode_batch(list(texts), add_special_tokens=False)
        return [(e.ids, e.offsets) for e in encodings]

    def _encode_batch(self, texts: list[str], pairs: list[str] | None, *, keys: list[str],
                      add_special_tokens: bool, truncation: str | None, max_length: int | None,
                      padding: str | None, pad_to_multiple_of: int | None,
                      padding_side: str) -> dict[str, list]:
        """The whole batch in Rust: pieces, special tokens, truncation and padding.

        Gives what the base class's Python path gives (tests compare both), several times
        faster. Like transformers' fast tokenizers, it sets the backend's truncation and
        padding for the call, so one HFTokenizer must not encode from two threads at once.
        """
        backend = self.backend
        if truncation:
            backend.enable_truncation(max_length, strategy=truncation,
                                      direction=self.truncation_side)
        if padding:
            backend.enable_padding(direction=padding_side, pad_id=self.pad_token_id,
                                   pad_token=self.pad_token, pad_to_multiple_of=pad_to_multiple_of,
                                   length=max_length if padding == "max_length" else None)
        inputs = texts if pairs is None else list(zip(texts, pairs, strict=True))
        try:
            encodings = backend.encode_batch(inputs, add_special_tokens=add_special_tokens)
        except Exception as err:  # the Rust side reports truncation that cannot be done
            raise DataError(f"cannot encode this batch: {err}") from None
        finally:
            backend.no_truncation()
            backend.no_padding()
        return {key: [getattr(e, ENCODING_FIELDS[key]) for e in encodings] for key in keys}

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        text = self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        if self.clean_up_tokenization_spaces and self._model_type() != "BPE":
            text = clean_up_tokenization(text)
        return text

    def _model_type(self) -> str:
        return type(self.backend.model).__name__

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, index: int) -> str | None:
        return self.backend.id_to_token(index)

    def get_vocab(self) -> dict[str, int]:
        return self.backend.get_vocab(with_added_tokens=True)

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def options(self) -> dict[str, Any]:
        return {**super().options(),
                "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces}

    def _save_files(self, folder: Path) -> None:
        atomic_save(folder / TOKENIZER_FILE, lambda tmp: self.backend.save(str(tmp)))

    @classmethod
    def _from_files(cls, folder: Path, options: dict[str, Any]) -> HFTokenizer:
        return cls.from_file(folder / TOKENIZER_FILE, **options)


def options_from_hf_config(config: dict[str, Any]) -> dict[str, Any]:
    """Translate a Hugging Face ``tokenizer_config.json`` into HFTokenizer keyword arguments."""
    special = {}
    for kind in SPECIAL_NAMES:
        token = config.get(f"{kind}_token")
        if isinstance(token, dict):  # an AddedToken written out as a dict
            token = token.get("content")
        if isinstance(token, str):
            special[kind] = token
    options: dict[str, Any] = {"special_tokens": special}
    if config.get("tokenizer_class", "").removesuffix("Fast") in SEGMENT_AWARE:
        options["model_input_names"] = ["input_ids", "token_type_ids", "attention_mask"]
    max_length = config.get("model_max_length")
    if isinstance(max_length, (int, float)) and max_length < 1e12:  # HF writes 1e30 for "none"
        options["model_max_length"] = int(max_length)
    for key in ("padding_side", "truncation_side", "chat_template", "model_input_names",
                "clean_up_tokenization_spaces"):
        if isinstance(config.get(key), (str, bool, list)):
            options[key] = config[key]
    return options


def template_from_post_processor(processor: dict[str, Any] | None) -> dict[str, list[str]]:
    """The special-token template of a tokenizer.json ``post_processor``, in base notation."""
    if not processor:
        return {"single": ["$A"], "pair": ["$A", "$B:1"]}
    kind = processor.get("type")
    if kind == "Sequence":
        for inner in processor.get("processors", []):
            if inner.get("type") != "ByteLevel":
                return template_from_post_processor(inner)
        return template_from_post_processor(None)
    if kind == "BertProcessing":
        cls, sep = processor["cls"][0], processor["sep"][0]
        return {"single": [cls, "$A", sep], "pair": [cls, "$A", sep, "$B:1", f"{sep}:1"]}
    if kind == "RobertaProcessing":
        cls, sep = processor["cls"][0], processor["sep"][0]
        return {"single": [cls, "$A", sep], "pair": [cls, "$A", sep, sep, "$B", sep]}
    if kind == "TemplateProcessing":
        return {part: [_template_item(item) for item in processor[part]]
                for part in ("single", "pair")}
    if kind == "ByteLevel":
        return template_from_post_processor(None)
    raise DataError(f"unsupported post_processor type {kind!r} in tokenizer.json; wxb reads "
                    "TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence")


def post_processor_from_template(template: dict[str, list[str]],
                                 vocab: dict[str, int]) -> dict[str, Any]:
    """The inverse of ``template_from_post_processor``: a ``TemplateProcessing`` for the file."""
    def items(part: str) -> list[dict[str, Any]]:
        out = []
        for item in template[part]:
            name, _, type_id = item.partition(":")
            kind = "Sequence" if name in ("$A", "$B") else "SpecialToken"
            out.append({kind: {"id": name.removeprefix("$"), "type_id": int(type_id or 0)}})
        return out

    names = sorted({item.partition(":")[0] for part in ("single", "pair")
                    for item in template[part] if not item.startswith("$")})
    return {"type": "TemplateProcessing", "single": items("single"), "pair": items("pair"),
            "special_tokens": {name: {"id": name, "ids": [vocab[name]], "tokens": [name]}
                               for name in names}}


def _template_item(item: dict[str, Any]) -> str:
    if "Sequence" in item:
        name, type_id = "$" + item["Sequence"]["id"], item["Sequence"]["type_id"]
    else:
        name, type_id = item["SpecialToken"]["id"], item["SpecialToken"]["type_id"]
    return f"{name}:{type_id}" if type_id else name


def clean_up_tokenization(text: str) -> str:
    """Hugging Face's clean-up of WordPiece decoding: no space before punctuation/contractions."""
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                          (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"),
                          (" 're", "'re")):
        text = text.replace(before, after)
    return text
