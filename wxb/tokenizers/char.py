"""Character tokenizer: one token per Unicode code point (the char-RNN / nanoGPT-shakespeare way).

    tok = CharTokenizer.train(open("input.txt").read())
    tok.encode("To be")        # [id of "T", id of "o", id of " ", ...]

A character outside the vocabulary becomes ``[UNK]``. For Chinese every hanzi is a token, which
is also how BERT treats CJK text; ``normalizer="s2tw"`` first turns Simplified into Traditional.
"""

from __future__ import annotations

from typing import ClassVar

from wxb.tokenizers.vocab import VocabTokenizer


class CharTokenizer(VocabTokenizer):
    """Every character is a piece; decoding joins them with nothing in between.

    Takes the arguments of ``VocabTokenizer``; build one with ``CharTokenizer.train(texts)``.
    """

    kind: ClassVar[str] = "char"

    def _spans(self, text: str) -> list[tuple[int, int]]:
        return [(i, i + 1) for i in range(len(text))]
