"""A vocabulary (token <-> id) built by counting a corpus, and the tokenizer base that uses one.

``Vocab.build`` is the classic recipe: count every token, drop the rare ones (``min_freq``),
keep the most frequent (``max_size``), and put the special tokens first, so ``[PAD]`` is 0 and
``[UNK]`` is 1. Ties are broken by first appearance, so the same corpus always gives the same ids.

The file format is BERT's ``vocab.txt``: one token per line, the line number (from 0) being the
id. A token can hold a line break (a character-level model sees ``"\\n"``), so ``\\``, newline and
carriage return are written as ``\\\\``, ``\\n`` and ``\\r``; every BERT ``vocab.txt`` reads back
unchanged, since none of its tokens holds a backslash followed by ``n``, ``r`` or ``\\``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from wxb.errors import ConfigError, DataError
from wxb.io import atomic_write_text
from wxb.tokenizers.base import Offsets, Tokenizer
from wxb.tokenizers.corpus import read_corpus
from wxb.tokenizers.normalize import Normalizer

VOCAB_FILE = "vocab.txt"
DEFAULT_SPECIAL_TOKENS = {"pad": "[PAD]", "unk": "[UNK]"}

_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {v: k for k, v in _ESCAPES.items()}


class Vocab:
    """Tokens in id order: ``Vocab(["[PAD]", "[UNK]", "a"])`` gives "a" the id 2."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = list(tokens)
        self._ids: dict[str, int] = {}
        for index, token in enumerate(self._tokens):
            if not isinstance(token, str) or not token:
                raise DataError(f"vocabulary entry {index} is {token!r}; tokens must be "
                                "non-empty strings")
            if token in self._ids:
                raise DataError(f"token {token!r} is in the vocabulary twice (ids "
                                f"{self._ids[token]} and {index}); each token needs one id")
            self._ids[token] = index

    @classmethod
    def build(cls, token_lists: Iterable[Iterable[str]], *, min_freq: int = 1,
              max_size: int | None = None,
              specials: Iterable[str] = tuple(DEFAULT_SPECIAL_TOKENS.values())) -> Vocab:
        """Count the tokens of every list and keep the frequent ones.

        Args:
            token_lists: the corpus, already split, e.g. one list of tokens per line.
            min_freq: a token seen fewer times than this is left out (it will encode as unk).
            max_size: the most entries, special tokens included; the least frequent go first.
            specials: placed first, in this order (duplicates kept once).
        """
        specials = list(dict.fromkeys(specials))
        if min_freq < 1:
            raise ConfigError(f"min_freq must be at least 1, got {min_freq}")
        if max_size is not None and max_size < len(specials):
            raise ConfigError(f"max_size={max_size} cannot hold the {len(specials)} special "
                              f"tokens {specials}; it must be at least {len(specials)}")
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        if not counts:
            raise DataError("the corpus is empty: it holds no tokens to build a vocabulary from")
        # A Counter keeps tokens in order of first appearance and sorted() is stable, so equal
        # counts stay in that order: the ids never depend on hashing or on the Python version.
        ranked = sorted(counts.items(), key=lambda item: -item[1])
        kept = set(specials)
        tokens = specials + [t for t, n in ranked if n >= min_freq and t not in kept]
        return cls(tokens[:max_size])

    def __len__(self) -> int:
        return len(self._tokens)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    def token_to_id(self, token: str) -> int | None:
        return self._ids.get(token)

    def id_to_token(self, index: int) -> str | None:
        return self._tokens[index] if 0 <= index < len(self._tokens) else None

    def get_vocab(self) -> dict[str, int]:
        return dict(self._ids)

    def save(self, path: str | Path) -> Path:
        """Write ``vocab.txt``: one (escaped) token per line, in id order."""
        path = Path(path)
        escape = re.compile(r"[\\\n\r]")
        atomic_write_text(path, "".join(escape.sub(lambda m: _ESCAPES[m.group()], t) + "\n"
                                        for t in self._tokens))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        """Read a ``vocab.txt`` written by ``save`` (or BERT's); lines may end in \\n or \\r\\n."""
        path = Path(path)
        lines = read_corpus(path).split("\n")
        if lines[-1] == "":
            lines.pop()
        unescape = re.compile(r"\\[\\nr]")
        tokens = []
        for number, line in enumerate(lines, start=1):
            line = line.removesuffix("\r")
            if not line:
                raise DataError(f"{path}: line {number} is empty; every line must hold a token")
            tokens.append(unescape.sub(lambda m: _UNESCAPES[m.group()], line))
        try:
            return cls(tokens)
        except DataError as err:
            raise DataError(f"{path}: {err} (line = id + 1)") from None


class VocabTokenizer(Tokenizer):
    """The part the character and word tokenizers share: split, normalize, look up.

    A subclass only says where the pieces of a text are (``_spans``) and how decoded pieces are
    joined (``separator``). Each piece is read from the normalized text, and since the
    normalizers keep every character in position, its offsets index the text the caller passed.
    Special tokens written in the text (``"[CLS]"``, a chat template's markers) are kept whole,
    as Hugging Face tokenizers do.

    Args:
        vocab: a ``Vocab`` or the tokens in id order.
        normalizer: ``None`` or a name from ``wxb.tokenizers.normalize.NORMALIZERS`` ("s2tw").
        lowercase: lower-case every piece (after normalization).
        special_tokens: default ``{"pad": "[PAD]", "unk": "[UNK]"}``; an unk token is required.
        added_tokens: more tokens kept whole with no role, such as a chat template's markers
            (``"<|im_start|>"``, ``"<|im_end|>"``); like special tokens, ``decode`` with
            ``skip_special_tokens=True`` leaves them out.
        **kwargs: the base ``Tokenizer`` settings (template, padding_side, ...).
    """

    separator = ""

    def __init__(self, vocab: Vocab | Iterable[str], *, normalizer: str | None = None,
                 lowercase: bool = False, special_tokens: dict[str, str] | None = None,
                 added_tokens: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(special_tokens=DEFAULT_SPECIAL_TOKENS if special_tokens is None
                         else special_tokens, **kwargs)
        if "unk" not in self.special_tokens:
            raise ConfigError(f"{type(self).__name__} needs an unk token for pieces outside "
                              "its vocabulary; add it, e.g. special_tokens={'unk': '[UNK]', ...}")
        self.vocab = vocab if isinstance(vocab, Vocab) else Vocab(vocab)
        self.normalizer = None if normalizer is None else Normalizer(normalizer)
        self.lowercase = lowercase
        self.added_tokens = list(dict.fromkeys(added_tokens))
        # Longest first, so that a special token that starts another one cannot cut it short.
        specials = sorted({*self.special_tokens.values(), *self.added_tokens}, key=len,
                          reverse=True)
        self._special_pattern = re.compile("|".join(map(re.escape, specials)))
        self._check_special_tokens()
        missing = [t for t in self.added_tokens if t not in self.vocab]
        if missing:
            raise ConfigError(f"added token {missing[0]!r} is not in the vocabulary")

    @classmethod
    def train(cls, texts: str | Iterable[str], *, min_frequency: int = 1,
              max_size: int | None = None, special_tokens: dict[str, str] | None = None,
              added_tokens: Sequence[str] = (), **options: Any) -> VocabTokenizer:
        """Build the vocabulary from ``texts`` (one string or many) and return the tokenizer.

        ``options`` are the constructor's (``normalizer``, ``lowercase``, ``segmenter``, ...);
        the special tokens take the first ids, in the order given, then the added tokens.
        """
        special_tokens = dict(DEFAULT_SPECIAL_TOKENS if special_tokens is None
                              else special_tokens)
        texts = [texts] if isinstance(texts, str) else texts
        # With only its special tokens, the tokenizer already splits text as the trained one will.
        reserved = [*special_tokens.values(), *added_tokens]
        tokenizer = cls(dict.fromkeys(reserved), special_tokens=special_tokens,
                        added_tokens=added_tokens, **options)

        def pieces(text: str) -> list[str]:
            if not isinstance(text, str):
                raise DataError(f"train takes texts as str, got {type(text).__name__}: "
                                f"{text!r:.60} (read a file with wxb.tokenizers.corpus."
                                "read_corpus)")
            return [piece for piece, _, _ in tokenizer._pieces(text)]

        tokenizer.vocab = Vocab.build(map(pieces, texts), min_freq=min_frequency,
                                      max_size=max_size, specials=reserved)
        return tokenizer

    # ---------------------------------------------------------------- splitting

    def _spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of each piece of ``text``, which holds no special token."""
        raise NotImplementedError

    def _pieces(self, text: str) -> list[tuple[str, int, int]]:
        """(token, start, end) for every piece of ``text``, special tokens kept whole."""
        normalized = self.normalizer(text) if self.normalizer else text
        # jieba's dictionary is Simplified Chinese, so pieces are cut on whichever text is
        # Simplified: the converted one (t2s, tw2s) or the caller's (s2t, s2tw). Both have the
        # same length, so the cuts fit either.
        cut = normalized if self.normalizer and self.normalizer.to_simplified else text
        pieces = []
        start = 0
        for match in [*self._special_pattern.finditer(text), None]:
            end = len(text) if match is None else match.start()
            for s, e in self._spans(cut[start:end]):
                token = normalized[start + s:start + e]
                pieces.append((token.lower() if self.lowercase else token, start + s, start + e))
            if match is not None:
                pieces.append((match.group(), match.start(), match.end()))
                start = match.end()
        return pieces

    # ---------------------------------------------------------------- the base class hooks

    def _encode_text(self, text: str) -> tuple[list[int], Offsets]:
        unk = self.unk_token_id
        ids, offsets = [], []
        for token, start, end in self._pieces(text):
            index = self.vocab.token_to_id(token)
            ids.append(unk if index is None else index)
            offsets.append((start, end))
        return ids, offsets

    def _decode_tokens(self, ids: list[int]) -> str:
        tokens = []
        for index in ids:
            token = self.vocab.id_to_token(index)
            if token is None:
                raise DataError(f"id {index} is outside the vocabulary (ids 0 to "
                                f"{len(self.vocab) - 1})")
            tokens.append(token)
        return self.separator.join(tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.vocab.token_to_id(token)

    def id_to_token(self, index: int) -> str | None:
        return self.vocab.id_to_token(index)

    def get_vocab(self) -> dict[str, int]:
        return self.vocab.get_vocab()

    @property
    def all_special_ids(self) -> list[int]:
        return sorted({*super().all_special_ids, *map(self.vocab.token_to_id, self.added_tokens)})

    def options(self) -> dict[str, Any]:
        return {**super().options(), "added_tokens": self.added_tokens, "lowercase": self.lowercase,
                "normalizer": self.normalizer.name if self.normalizer else None}

    def _save_files(self, folder: Path) -> None:
        self.vocab.save(folder / VOCAB_FILE)

    @classmethod
    def _from_files(cls, folder: Path, options: dict[str, Any]) -> VocabTokenizer:
        return cls(Vocab.load(folder / VOCAB_FILE), **options)
