"""BM25 over the chunks of an index, with ``bm25s`` (the Lucene variant, bm25s' defaults
k1 = 1.5, b = 0.75).

Texts become terms the same way for passages and queries: lower-cased; a text with Chinese or
Japanese characters is converted to Simplified script (OpenCC ``t2s``, because jieba's
dictionary is Simplified) and cut into words by jieba; each word (or a text without CJK) is then
split into runs of letters and digits (``\\w+``), so punctuation never is a term. There is no
stemming and no stop-word list.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from wxb.rag import require_module

CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
WORD = re.compile(r"\w+")


def bm25_terms(text: str) -> list[str]:
    """The BM25 terms of a text (see the module's docstring)."""
    text = text.lower()
    if not CJK.search(text):
        return WORD.findall(text)
    from wxb.tokenizers.normalize import Normalizer
    from wxb.tokenizers.word import _jieba

    words = _jieba(()).lcut(Normalizer("t2s")(text))
    return [term for word in words for term in WORD.findall(word)]


class BM25:
    """``BM25(texts).scores(query)`` -> one score a text, (len(texts),) float32."""

    def __init__(self, texts: Sequence[str]) -> None:
        bm25s = require_module("bm25s", "bm25s")
        self.size = len(texts)
        self.retriever = bm25s.BM25()
        # bm25s keeps an empty-token entry so that a passage with no term still has a row.
        self.retriever.index([bm25_terms(t) for t in texts], show_progress=False)
        self.vocabulary = set(self.retriever.vocab_dict)

    def scores(self, query: str) -> np.ndarray:
        """The BM25 score of every text for ``query`` (0 where no query term occurs)."""
        terms = [t for t in bm25_terms(query) if t in self.vocabulary]
        if not terms:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self.retriever.get_scores(terms), dtype=np.float32)
