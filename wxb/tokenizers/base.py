"""The one tokenizer interface every wxb tokenizer shares.

A subclass knows how to turn text into ids (with character offsets) and ids back into text;
this base class adds what is the same for all of them, with Hugging Face semantics:

- special tokens (``pad``, ``unk``, ``bos``, ``eos``, ``cls``, ``sep``, ``mask``) and the
  template that wraps a sequence or a pair in them (``[CLS] $A [SEP] $B [SEP]``);
- batch ``__call__`` with truncation, padding (longest / max_length, left or right),
  ``attention_mask``, ``token_type_ids``, ``offset_mapping`` and ``return_tensors="pt"``;
- chat templates (``apply_chat_template``), rendered as ``transformers`` renders them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from wxb.errors import ConfigError, DataError
from wxb.io import atomic_write_json, read_json_object

SPECIAL_NAMES = ("pad", "unk", "bos", "eos", "cls", "sep", "mask")
CONFIG_FILE = "tokenizer_config.json"
Offsets = list[tuple[int, int]]


class BatchEncoding(dict):
    """A dict of model inputs (``input_ids``, ``attention_mask``, ...) with attribute access."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Tokenizer:
    """Base class. Subclasses implement ``_encode_text``, ``_decode_tokens``, the vocabulary
    lookups, ``_save_files`` and ``_from_files``.

    Args:
        special_tokens: ``{"pad": "[PAD]", "unk": "[UNK]", ...}``; each must be in the vocabulary.
        template: how special tokens wrap one sequence and a pair, in the Hugging Face
            ``TemplateProcessing`` notation: ``{"single": ["[CLS]", "$A", "[SEP]"], "pair":
            ["[CLS]", "$A", "[SEP]", "$B:1", "[SEP]:1"]}`` (``:1`` sets token_type_id 1).
        padding_side / truncation_side: "right" or "left".
        model_max_length: the longest input the model takes (used by ``truncation=True``).
        chat_template: a Jinja template for ``apply_chat_template``.
        model_input_names: what ``__call__`` returns by default; BERT-style tokenizers include
            ``token_type_ids``.
    """

    kind: ClassVar[str] = ""  # the name load_tokenizer finds in tokenizer_config.json

    def __init__(
        self,
        *,
        special_tokens: dict[str, str] | None = None,
        template: dict[str, list[str]] | None = None,
        padding_side: str = "right",
        truncation_side: str = "right",
        model_max_length: int | None = None,
        chat_template: str | None = None,
        model_input_names: list[str] | None = None,
    ) -> None:
        special_tokens = dict(special_tokens or {})
        unknown = sorted(set(special_tokens) - set(SPECIAL_NAMES))
        if unknown:
            raise ConfigError(f"unknown special token kind {unknown[0]!r}; the kinds are: "
                              f"{', '.join(SPECIAL_NAMES)}")
        self.special_tokens = special_tokens
        self.template = template or {"single": ["$A"], "pair": ["$A", "$B:1"]}
        self.padding_side = _side("padding_side", padding_side)
        self.truncation_side = _side("truncation_side", truncation_side)
        self.model_max_length = model_max_length
        self.chat_template = chat_template
        self.model_input_names = model_input_names or ["input_ids", "attention_mask"]

    def _check_special_tokens(self) -> None:
        """Call at the end of a subclass __init__, once the vocabulary exists."""
        for kind, token in self.special_tokens.items():
            if self.token_to_id(token) is None:
                raise ConfigError(f"special token {token!r} ({kind}_token) is not in the "
                                  "vocabulary; add it to the vocabulary or choose another token")
        for part in ("single", "pair"):
            for item in self.template.get(part, []):
                name = item.split(":")[0]
                if name not in ("$A", "$B") and self.token_to_id(name) is None:
                    raise ConfigError(f"template token {name!r} is not in the vocabulary")

    # ---------------------------------------------------------------- subclass hooks

    def _encode_text(self, text: str) -> tuple[list[int], Offsets]:
        """Ids of ``text`` without special tokens, and each id's (start, end) in ``text``."""
        raise NotImplementedError

    def _encode_texts(self, texts: Sequence[str]) -> list[tuple[list[int], Offsets]]:
        """Batch version of ``_encode_text``; a fast backend overrides it."""
        return [self._encode_text(t) for t in texts]

    def _decode_tokens(self, ids: list[int]) -> str:
        raise NotImplementedError

    def token_to_id(self, token: str) -> int | None:
        raise NotImplementedError

    def id_to_token(self, index: int) -> str | None:
        raise NotImplementedError

    def get_vocab(self) -> dict[str, int]:
        raise NotImplementedError

    def _save_files(self, folder: Path) -> None:
        raise NotImplementedError

    @classmethod
    def _from_files(cls, folder: Path, options: dict[str, Any]) -> Tokenizer:
        raise NotImplementedError

    # ---------------------------------------------------------------- vocabulary

    @property
    def vocab_size(self) -> int:
        return len(self.get_vocab())

    def __len__(self) -> int:
        return self.vocab_size

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int]:
        unk = self.unk_token_id
        if isinstance(tokens, str):
            found = self.token_to_id(tokens)
            return unk if found is None else found
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | list[int]) -> str | list[str]:
        if isinstance(ids, int):
            return self.id_to_token(ids)
        return [self.id_to_token(i) for i in ids]

    def tokenize(self, text: str) -> list[str]:
        return [self.id_to_token(i) for i in self._encode_text(text)[0]]

    @property
    def all_special_ids(self) -> list[int]:
        ids = [self.token_to_id(t) for t in self.special_tokens.values()]
        return sorted({i for i in ids if i is not None})

    def __getattr__(self, name: str) -> Any:
        # pad_token, pad_token_id, unk_token, ... for every kind in SPECIAL_NAMES.
        for kind in SPECIAL_NAMES:
            if name == f"{kind}_token":
                return self.__dict__.get("special_tokens", {}).get(kind)
            if name == f"{kind}_token_id":
                token = self.__dict__.get("special_tokens", {}).get(kind)
                return None if token is None else self.token_to_id(token)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    # ---------------------------------------------------------------- encoding

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return sum(1 for item in self.template["pair" if pair else "single"]
                   if not item.startswith("$"))

    def _apply_template(self, a: tuple[list[int], Offsets], b: tuple[list[int], Offsets] | None,
                        add_special_tokens: bool) -> dict[str, list]:
        if not add_special_tokens:
            parts = [(a, 0)] if b is None else [(a, 0), (b, 1)]
            items = [("$A" if i == 0 else "$B", t) for i, (_, t) in enumerate(parts)]
        else:
            items = []
            for item in self.template["single" if b is None else "pair"]:
                name, _, type_id = item.partition(":")
                items.append((name, int(type_id or 0)))
        ids, types, offsets, special = [], [], [], []
        for name, type_id in items:
            if name in ("$A", "$B"):
                seq_ids, seq_offsets = a if name == "$A" else b
                ids += seq_ids
                offsets += seq_offsets
                special += [0] * len(seq_ids)
                types += [type_id] * len(seq_ids)
            else:
                ids.append(self.token_to_id(name))
                offsets.append((0, 0))
                special.append(1)
                types.append(type_id)
        return {"input_ids": ids, "token_type_ids": types, "offset_mapping": offsets,
                "special_tokens_mask": special}

    def encode(self, text: str, text_pair: str | None = None, *,
               add_special_tokens: bool = True, truncation: bool | str = False,
               max_length: int | None = None) -> list[int]:
        """Ids of ``text`` (and ``text_pair``), with special tokens by default."""
        return self(text, text_pair, add_special_tokens=add_special_tokens,
                    truncation=truncation, max_length=max_length)["input_ids"]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        ids = [int(i) for i in ids]
        if skip_special_tokens:
            drop = set(self.all_special_ids)
            ids = [i for i in ids if i not in drop]
        return self._decode_tokens(ids)

    def batch_decode(self, sequences: Sequence[Sequence[int]],
                     skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(s, skip_special_tokens) for s in sequences]

    def __call__(
        self,
        text: str | Sequence[str],
        text_pair: str | Sequence[str] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str = False,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool = True,
        return_token_type_ids: bool | None = None,
        return_offsets_mapping: bool = False,
        return_special_tokens_mask: bool = False,
    ) -> BatchEncoding:
        """Encode one text or a batch (optionally of pairs) into model inputs.

        ``padding``: False, True / "longest", or "max_length". ``truncation``: False, True /
        "longest_first", "only_first" or "only_second"; it cuts to ``max_length`` (or
        ``model_max_length``) counting the special tokens.
        """
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        pairs = None
        if text_pair is not None:
            pairs = [text_pair] if isinstance(text_pair, str) else list(text_pair)
            if len(pairs) != len(texts):
                raise DataError(f"got {len(texts)} texts but {len(pairs)} text pairs")
        for t in texts + (pairs or []):
            if not isinstance(t, str):
                raise DataError(f"tokenizers take str, got {type(t).__name__}: {t!r:.60}")
        limit = self._max_length(truncation, padding, max_length)
        keys = ["input_ids"]
        if return_token_type_ids or (return_token_type_ids is None and
                                     "token_type_ids" in self.model_input_names):
            keys.append("token_type_ids")
        if return_attention_mask:
            keys.append("attention_mask")
        if return_offsets_mapping:
            keys.append("offset_mapping")
        if return_special_tokens_mask:
            keys.append("special_tokens_mask")
        padding = _padding_strategy(padding)
        if padding and self.pad_token_id is None:
            raise ConfigError("padding needs a pad token; set special_tokens={'pad': ...} "
                              "(for a GPT-style tokenizer, the eos token is the usual choice)")
        columns = self._encode_batch(
            texts, pairs, keys=keys, add_special_tokens=add_special_tokens,
            truncation=_truncation_strategy(truncation) if limit is not None else None,
            max_length=limit, padding=padding, pad_to_multiple_of=pad_to_multiple_of,
            padding_side=_side("padding_side", padding_side or self.padding_side))
        out = BatchEncoding(columns)
        if return_tensors is not None:
            return _as_tensors(out, return_tensors)
        return BatchEncoding({k: v[0] for k, v in out.items()}) if single else out

    def _encode_batch(self, texts: list[str], pairs: list[str] | None, *, keys: list[str],
                      add_special_tokens: bool, truncation: str | None, max_length: int | None,
                      padding: str | None, pad_to_multiple_of: int | None,
                      padding_side: str) -> dict[str, list]:
        """The encoded batch as columns (``{"input_ids": [[...], ...], ...}``) of ``keys``.

        This is the reference path, in Python; a fast backend overrides it.
        """
        firsts = self._encode_texts(texts)
        seconds = self._encode_texts(pairs) if pairs is not None else [None] * len(texts)
        rows = []
        for a, b in zip(firsts, seconds, strict=True):
            if truncation:
                budget = max_length - (self.num_special_tokens_to_add(b is not None)
                                       if add_special_tokens else 0)
                a, b = self._truncate(a, b, budget, truncation)
            rows.append(self._apply_template(a, b, add_special_tokens))
        self._pad(rows, padding, max_length, pad_to_multiple_of, padding_side)
        return {k: [r[k] for r in rows] for k in keys}

    def _max_length(self, truncation: bool | str, padding: bool | str,
                    max_length: int | None) -> int | None:
        if max_length is not None:
            if max_length < 1:
                raise ConfigError(f"max_length must be >= 1, got {max_length}")
            return max_length
        if truncation or padding == "max_length":
            if self.model_max_length is None:
                raise ConfigError("truncation / padding='max_length' need max_length "
                                  "(this tokenizer has no model_max_length)")
            return self.model_max_length
        return None

    def _truncate(self, a, b, budget: int, strategy: str):
        """Cut ``a`` (and ``b``) to ``budget`` tokens in all, as the ``tokenizers`` library does."""
        if budget < 0:
            raise ConfigError(f"max_length is {-budget} too short for the special tokens the "
                              "template adds; raise max_length")
        len_a, len_b = len(a[0]), 0 if b is None else len(b[0])
        if len_a + len_b <= budget:
            return a, b
        excess = len_a + len_b - budget
        if b is None and strategy == "only_second":
            raise ConfigError("truncation='only_second' needs a text_pair")
        if b is None and strategy == "longest_first":
            len_a = budget
        elif strategy in ("only_first", "only_second"):
            first = strategy == "only_first"
            # Like the tokenizers library: the chosen sequence must keep at least one token.
            if (len_a if first else len_b) <= excess:
                raise DataError(f"cannot cut {excess} tokens from the "
                                f"{'first' if first else 'second'} sequence alone with "
                                f"truncation={strategy!r}; raise max_length or use "
                                "'longest_first'")
            len_a, len_b = (len_a - excess, len_b) if first else (len_a, len_b - excess)
        else:
            # Keep the shorter one whole if the longer can absorb the cut; otherwise split the
            # budget in halves, the odd token going to the longer sequence.
            short, long = sorted((len_a, len_b))
            long = short if short > budget else max(short, budget - short)
            if short + long > budget:
                short, long = budget // 2, budget // 2 + budget % 2
            len_a, len_b = (short, long) if len_a <= len_b else (long, short)
        return self._cut(a, len_a), None if b is None else self._cut(b, len_b)

    def _cut(self, seq: tuple[list[int], Offsets], keep: int) -> tuple[list[int], Offsets]:
        ids, offsets = seq
        if self.truncation_side == "left":
            start = len(ids) - keep
            return ids[start:], offsets[start:]
        return ids[:keep], offsets[:keep]

    def _pad(self, rows: list[dict[str, list]], padding: str | None, limit: int | None,
             multiple: int | None, side: str) -> None:
        for r in rows:
            r["attention_mask"] = [1] * len(r["input_ids"])
        if padding is None:
            return
        target = limit if padding == "max_length" else max(len(r["input_ids"]) for r in rows)
        if multiple:
            target = -(-target // multiple) * multiple
        pad_id = self.pad_token_id
        fill = {"input_ids": pad_id, "token_type_ids": 0, "attention_mask": 0,
                "offset_mapping": (0, 0), "special_tokens_mask": 1}
        for r in rows:
            missing = target - len(r["input_ids"])
            if missing <= 0:
                continue
            for key, value in fill.items():
                pad = [value] * missing
                r[key] = pad + r[key] if side == "left" else r[key] + pad

    # ---------------------------------------------------------------- chat templates

    def apply_chat_template(self, messages: list[dict[str, Any]], *,
                            add_generation_prompt: bool = False, tokenize: bool = True,
                            chat_template: str | None = None, **kwargs: Any) -> str | list[int]:
        """Render a conversation with the tokenizer's Jinja chat template.

        As in ``transformers``, the rendered text already holds its special tokens, so it is
        encoded without adding more.
        """
        from wxb.tokenizers.chat import render_chat

        template = chat_template or self.chat_template
        if template is None:
            raise ConfigError("this tokenizer has no chat_template; pass chat_template=... "
                              "(e.g. wxb.tokenizers.chat.CHATML)")
        text = render_chat(template, messages, add_generation_prompt=add_generation_prompt,
                           special_tokens={f"{k}_token": v for k, v in
                                           self.special_tokens.items()}, **kwargs)
        return self.encode(text, add_special_tokens=False) if tokenize else text

    # ---------------------------------------------------------------- files

    def options(self) -> dict[str, Any]:
        """The settings saved in tokenizer_config.json (subclasses add their own)."""
        return {"special_tokens": self.special_tokens, "template": self.template,
                "padding_side": self.padding_side, "truncation_side": self.truncation_side,
                "model_max_length": self.model_max_length, "chat_template": self.chat_template,
                "model_input_names": self.model_input_names}

    def save(self, folder: str | Path) -> Path:
        """Write the vocabulary files and ``tokenizer_config.json`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._save_files(folder)
        config = {"wxb_tokenizer": self.kind, **self.options()}
        # Hugging Face reads these names from tokenizer_config.json.
        config.update({f"{k}_token": v for k, v in self.special_tokens.items()})
        atomic_write_json(folder / CONFIG_FILE, config)
        return folder

    save_pretrained = save

    @classmethod
    def load(cls, folder: str | Path) -> Tokenizer:
        folder = Path(folder)
        options = read_tokenizer_config(folder)
        options.pop("wxb_tokenizer", None)
        for kind in SPECIAL_NAMES:
            options.pop(f"{kind}_token", None)
        return cls._from_files(folder, options)


def read_tokenizer_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    if not path.is_file():
        return {}
    return read_json_object(path, DataError)


def _padding_strategy(padding: bool | str | None) -> str | None:
    if padding in (False, None, "do_not_pad"):
        return None
    if padding in (True, "longest"):
        return "longest"
    if padding == "max_length":
        return padding
    raise ConfigError(f"unknown padding {padding!r}; choose one of: False, True, 'longest', "
                      "'max_length'")


def _truncation_strategy(truncation: bool | str | None) -> str | None:
    if truncation in (False, None, "do_not_truncate"):
        return None
    if truncation is True:
        return "longest_first"
    if truncation in ("longest_first", "only_first", "only_second"):
        return truncation
    raise ConfigError(f"unknown truncation {truncation!r}; choose one of: True, "
                      "'longest_first', 'only_first', 'only_second'")


def _side(name: str, value: str) -> str:
    if value not in ("left", "right"):
        raise ConfigError(f"{name} must be 'left' or 'right', got {value!r}")
    return value


def _as_tensors(out: BatchEncoding, kind: str) -> BatchEncoding:
    if kind != "pt":
        raise ConfigError(f"return_tensors={kind!r} is not supported; use 'pt' (PyTorch)")
    import torch

    lengths = {len(row) for row in out["input_ids"]}
    if len(lengths) > 1:
        raise DataError("sequences have different lengths; pass padding=True (and "
                        "truncation=True) to return tensors")
    return BatchEncoding({k: torch.tensor(v, dtype=torch.long) for k, v in out.items()})
