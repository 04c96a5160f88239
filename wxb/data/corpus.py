"""Plain-text corpora for word vectors: sentences of words and the vocabulary of their frequent
words, shared by Word2Vec, fastText, GloVe and the biLM.

    files (text lines, CoNLL, CSV with a text column) -> sentences: lists of words
          -> Vocabulary.build(min_count): words by falling count, their counts
          -> vocabulary.encode(sentences): arrays of ids (rare words dropped, as word2vec does)

Words are split by ``words_of``: runs of letters/digits (keeping inner apostrophes and hyphens)
and single punctuation marks, lower-cased unless asked not to; CoNLL files keep their own
tokens. Each CJK character is a word (no segmentation).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wxb.errors import DataError

WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*|[\u3400-\u9fff]|[^\w\s]", re.UNICODE)
CJK = re.compile(r"[\u3400-\u9fff]")
MARKUP = re.compile(r"<br\s*/?>", re.IGNORECASE)  # IMDB's line breaks


def words_of(text: str, *, lowercase: bool = True) -> list[str]:
    """The words of ``text``: ``"Don't stop-loss, 2 <br />Go"`` -> ``["don't", "stop-loss",
    ",", "2", "go"]``; each CJK character alone."""
    text = MARKUP.sub(" ", text)
    if lowercase:
        text = text.lower()
    out = []
    for match in WORD.finditer(text):
        token = match.group()
        out.extend(CJK.findall(token) if CJK.search(token) and len(token) > 1 else [token])
    return out


def read_corpus(paths: Sequence[str | Path], *, lowercase: bool = True,
                text_column: str = "text", limit: int | None = None) -> list[list[str]]:
    """Sentences (lists of words) from text files (a sentence or document per line), CoNLL
    files (``.conll`` or a name holding ``conll`` / a ``-DOCSTART-`` line: their tokens, one
    sentence per block) and CSV/TSV/JSONL files (``text_column``, gzip allowed). ``limit`` keeps
    the first sentences."""
    from wxb.data.conll import read_conll
    from wxb.data.text import read_rows

    sentences: list[list[str]] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise DataError(f"corpus file {path} does not exist")
        suffixes = "".join(path.suffixes).lower().replace(".gz", "")
        if _is_conll(path):
            found = [[w.lower() if lowercase else w for w in s.tokens] for s in read_conll(path)]
        elif suffixes.endswith((".csv", ".tsv", ".jsonl", ".json")):
            rows = read_rows(path)
            if rows and text_column not in rows[0]:
                raise DataError(f"{path}: no column {text_column!r}; columns: "
                                f"{', '.join(rows[0])}")
            found = [words_of(str(r[text_column]), lowercase=lowercase) for r in rows]
        else:
            with open(path, encoding="utf-8", errors="replace") as f:
                found = [words_of(line, lowercase=lowercase) for line in f]
        sentences.extend(s for s in found if s)
        if limit is not None and len(sentences) >= limit:
            return sentences[:limit]
    return sentences


def _is_conll(path: Path) -> bool:
    if "conll" in path.name.lower() or "conll" in path.parent.name.lower():
        return True
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.readline().startswith("-DOCSTART-")


@dataclass
class Vocabulary:
    """The words kept, most frequent first (ties in order of first appearance, as gensim),
    and their counts in the corpus."""

    words: list[str]
    counts: np.ndarray  # (len(words),) int64
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], *, min_count: int = 5,
              max_size: int | None = None) -> Vocabulary:
        """Every word seen at least ``min_count`` times (the ``max_size`` most frequent)."""
        counter: Counter[str] = Counter()
        for sentence in sentences:
            counter.update(sentence)
        kept = [(w, c) for w, c in counter.most_common() if c >= min_count][:max_size]
        if not kept:
            top = counter.most_common(1)
            most = f" (the most frequent, {top[0][0]!r}, appears {top[0][1]} times)" if top else ""
            raise DataError(f"no word of the corpus appears at least min_count={min_count} "
                            f"times{most}; lower min_count or give a larger corpus")
        return cls([w for w, _ in kept], np.array([c for _, c in kept], dtype=np.int64))

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def encode(self, sentences: Iterable[Sequence[str]]) -> list[np.ndarray]:
        """Each sentence as an int64 array of ids; words outside the vocabulary are dropped
        (word2vec's rule: windows then span the kept words)."""
        index = self.index
        return [np.array([index[w] for w in s if w in index], dtype=np.int64)
                for s in sentences]

    @property
    def total(self) -> int:
        """Tokens of the corpus that the vocabulary keeps."""
        return int(self.counts.sum())
