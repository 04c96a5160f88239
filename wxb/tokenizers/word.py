"""Word tokenizer: whitespace splitting for English, jieba word segmentation for Chinese.

    en = WordTokenizer.train(lines, lowercase=True, split_punctuation=True, max_size=20000)
    zh = WordTokenizer.train(lines, segmenter="jieba", hmm=False)

A word outside the vocabulary becomes ``[UNK]``; that is the price of word-level vocabularies,
which subword tokenizers (BPE, WordPiece) were invented to avoid.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from typing import Any, ClassVar

from wxb.errors import ConfigError
from wxb.tokenizers.vocab import Vocab, VocabTokenizer

SEGMENTERS = {
    "whitespace": "split on whitespace (English and other space-separated languages)",
    "jieba": "jieba word segmentation (Chinese)",
}


class WordTokenizer(VocabTokenizer):
    """Words as tokens.

    Args:
        vocab: a ``Vocab`` or the tokens in id order; build one with ``WordTokenizer.train``.
        segmenter: "whitespace": a word is a run of non-space characters, and decoding joins
            words with one space (so runs of spaces and newlines come back as one space).
            "jieba": ``jieba.cut`` decides, spaces and newlines are tokens of their own, and
            decoding joins with nothing, which gives the text back.
        split_punctuation: (whitespace) make each punctuation mark a word of its own, so
            "end." is "end" and "."; a word is then a run of letters, digits and underscores.
        hmm: (jieba) let jieba's HMM join characters into words its dictionary lacks.
        user_words: (jieba) words to keep whole, added to a jieba dictionary of this tokenizer's
            own (``jieba.add_word`` on the shared one would change every other user of jieba).
        **kwargs: ``normalizer``, ``lowercase``, ``special_tokens`` and the base settings.
    """

    kind: ClassVar[str] = "word"

    def __init__(self, vocab: Vocab | Iterable[str], *, segmenter: str = "whitespace",
                 split_punctuation: bool = False, hmm: bool = True,
                 user_words: list[str] | None = None, **kwargs: Any) -> None:
        if segmenter not in SEGMENTERS:
            choices = ", ".join(f"{k!r} ({v})" for k, v in SEGMENTERS.items())
            raise ConfigError(f"unknown segmenter {segmenter!r}; the segmenters are: {choices}")
        if user_words and segmenter != "jieba":
            raise ConfigError("user_words only apply to segmenter='jieba'")
        self.segmenter = segmenter
        self.split_punctuation = split_punctuation
        self.hmm = hmm
        self.user_words = list(user_words or [])
        self.separator = " " if segmenter == "whitespace" else ""
        self._word = re.compile(r"\w+|[^\w\s]" if split_punctuation else r"\S+")
        super().__init__(vocab, **kwargs)

    def _spans(self, text: str) -> list[tuple[int, int]]:
        if self.segmenter == "jieba":
            segmenter = _jieba(tuple(self.user_words))
            return [(start, end) for _, start, end in segmenter.tokenize(text, HMM=self.hmm)]
        return [match.span() for match in self._word.finditer(text)]

    def options(self) -> dict[str, Any]:
        return {**super().options(), "segmenter": self.segmenter,
                "split_punctuation": self.split_punctuation, "hmm": self.hmm,
                "user_words": self.user_words}


@cache
def _jieba(user_words: tuple[str, ...]):
    """jieba's shared segmenter, or one with ``user_words`` added (built once per word list)."""
    import logging

    import jieba

    # jieba logs "Building prefix dict ..." to stderr the first time it segments.
    jieba.setLogLevel(logging.WARNING)
    if not user_words:
        return jieba.dt
    segmenter = jieba.Tokenizer()
    for word in user_words:
        segmenter.add_word(word)
    return segmenter
