"""Train any wxb tokenizer from text files (what `wxb tokenizer train` runs)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wxb.config import coerce
from wxb.errors import ConfigError
from wxb.tokenizers.base import Tokenizer
from wxb.tokenizers.corpus import read_corpus

BERT_SPECIALS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
KINDS = ("bpe", "wordpiece", "unigram", "char", "word")


def train_tokenizer(kind: str, corpus: Sequence[str | Path], *, vocab_size: int,
                    min_frequency: int = 2, segmenter: str = "whitespace",
                    fast: bool = False, extra_ids: int = 100) -> Tokenizer:
    """Train a ``kind`` tokenizer on the lines of the ``corpus`` files.

    ``bpe`` is the readable byte-level BPE (``fast=True``: the tokenizers library's trainer);
    ``wordpiece`` is BERT's, trained with the tokenizers library; ``unigram`` is T5's
    SentencePiece-style Unigram (``vocab_size`` pieces, then ``extra_ids`` sentinels; it has
    no ``min_frequency``); ``char`` and ``word`` keep the ``vocab_size`` most frequent tokens
    seen at least ``min_frequency`` times.
    """
    lines = [line for path in corpus for line in read_corpus(path).splitlines()]
    return train_on_lines(kind, lines, vocab_size=vocab_size, min_frequency=min_frequency,
                          segmenter=segmenter, fast=fast, extra_ids=extra_ids)


def train_on_lines(kind: str, lines: Sequence[str], *, vocab_size: int, min_frequency: int = 2,
                   segmenter: str = "whitespace", fast: bool = False,
                   extra_ids: int = 100) -> Tokenizer:
    """``train_tokenizer`` on text already in memory, one string per line or document."""
    if kind not in KINDS:
        raise ConfigError(f"unknown tokenizer kind {kind!r}; choose one of: {', '.join(KINDS)}")
    if vocab_size < 1:
        raise ConfigError(f"vocab_size must be >= 1, got {vocab_size}")
    lines = list(lines)
    if kind == "unigram":
        from wxb.tokenizers.sentencepiece import train_t5_unigram

        return train_t5_unigram(lines, vocab_size=vocab_size, extra_ids=extra_ids)
    if kind == "bpe" and not fast:
        from wxb.tokenizers.bpe import BPETokenizer

        return BPETokenizer.train(lines, vocab_size, min_frequency=min_frequency)
    if kind in ("char", "word"):
        from wxb.tokenizers.load import tokenizer_class

        options = {"segmenter": segmenter} if kind == "word" else {}
        return tokenizer_class(kind).train(lines, min_frequency=min_frequency,
                                           max_size=vocab_size, **options)
    return _train_with_tokenizers_library(kind, lines, vocab_size, min_frequency)


def _train_with_tokenizers_library(kind: str, lines: list[str], vocab_size: int,
                                   min_frequency: int) -> Tokenizer:
    from tokenizers import Tokenizer as Backend
    from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

    if kind == "wordpiece":
        backend = Backend(models.WordPiece(unk_token="[UNK]"))
        backend.normalizer = normalizers.BertNormalizer(lowercase=True)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=list(BERT_SPECIALS.values()))
    else:
        backend = Backend(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=["<|endoftext|>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(lines, trainer)
    size = backend.get_vocab_size()
    if size > vocab_size:  # the trainer keeps the whole alphabet whatever vocab_size says
        raise ConfigError(f"vocab_size {vocab_size} is smaller than this corpus's base alphabet "
                          f"and special tokens ({size}); use vocab_size >= {size}")
    if kind == "wordpiece":
        from wxb.tokenizers.wordpiece import WordPieceTokenizer

        return WordPieceTokenizer(backend.get_vocab())
    from wxb.tokenizers.hf import HFTokenizer

    eos = "<|endoftext|>"
    return HFTokenizer(backend, special_tokens={"bos": eos, "eos": eos, "unk": eos})


def tokenizer_from_settings(spec: Any, texts: Sequence[str], *, field: str = "model.tokenizer",
                            special_tokens: dict[str, str] | None = None) -> Tokenizer:
    """What a training config's tokenizer entry names: a tokenizer folder, or settings
    ``{kind: char | word | bpe | wordpiece | unigram, vocab_size, min_frequency, <the kind's
    options>}`` trained on ``texts``. ``special_tokens`` (roles -> tokens) replaces the kind's
    defaults (char / word: [PAD] and [UNK]; bpe: GPT-2's; wordpiece keeps BERT's; unigram:
    T5's <pad>, </s>, <unk>, renamable). ``unigram`` is T5's tokenizer trained from scratch,
    with ``extra_ids`` sentinels (default 100) after its ``vocab_size`` pieces; it has no
    ``min_frequency``. ``field`` names the entry in errors."""
    from wxb.tokenizers.load import load_tokenizer, tokenizer_class

    if not isinstance(spec, dict):
        return load_tokenizer(spec)
    options = dict(spec)
    kind = options.pop("kind", None)
    if kind not in KINDS:
        raise ConfigError(f"{field} is a folder or settings with kind one of "
                          f"{', '.join(KINDS)}; got {spec!r}")
    size = options.pop("vocab_size", None)
    if kind == "unigram":
        from wxb.tokenizers.sentencepiece import train_t5_unigram

        extra_ids = coerce(f"{field}.extra_ids", options.pop("extra_ids", 100), int)
        if options:
            raise ConfigError(f"{field}: unknown setting {next(iter(options))!r} for kind "
                              "unigram; it takes vocab_size and extra_ids")
        size = coerce(f"{field}.vocab_size", size or 8000, int)
        return train_t5_unigram(texts, vocab_size=size, extra_ids=extra_ids,
                                special_tokens=special_tokens)
    min_frequency = coerce(f"{field}.min_frequency", options.pop("min_frequency", 1), int)
    if kind == "wordpiece":
        return train_on_lines("wordpiece", texts, vocab_size=size or 8000,
                              min_frequency=min_frequency)
    if kind == "bpe":
        from wxb.tokenizers.bpe import BPETokenizer

        return BPETokenizer.train(list(texts), size or 8000, min_frequency=min_frequency,
                                  special_tokens=special_tokens, **options)
    return tokenizer_class(kind).train(texts, min_frequency=min_frequency, max_size=size,
                                       special_tokens=special_tokens, **options)
