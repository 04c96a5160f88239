"""Finding the chunks of an index that answer a query: dense, BM25, or both fused.

- **dense**: the query's embedding against every chunk's (exact inner product, faiss);
- **bm25**: BM25 over the chunks' terms (``wxb.rag.bm25``); chunks sharing no term with the
  query are not returned;
- **hybrid**: reciprocal-rank fusion (Cormack, Clarke and Büttcher, 2009) of the two rankings,
  each cut at ``FUSION_DEPTH`` (or the depth asked, if deeper): a chunk scores
  sum over the rankings of 1 / (k + its rank), ranks from 1, with ``k = 60`` as in the paper
  (a chunk missing from a ranking gets nothing from it).

A query longer than the embedder's limit is truncated for the dense side; the result says so
(``SearchResult.truncated``) rather than warning.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from wxb.errors import ConfigError
from wxb.rag.chunk import Chunk
from wxb.rag.embed import Embedded, Embedder
from wxb.rag.index import Index

METHODS: tuple[str, ...] = ("dense", "bm25", "hybrid")
RRF_K = 60
FUSION_DEPTH = 100
Id = TypeVar("Id", bound=Hashable)


def reciprocal_rank_fusion(rankings: Iterable[Sequence[Id]],
                           k: int = RRF_K) -> list[tuple[Id, float]]:
    """Fuse rankings (ids, best first): ``[(id, sum of 1 / (k + rank)), ...]``, best first;
    ties keep the order in which ids were first met."""
    scores: dict[Id, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk: its ``rank`` (from 1), ``score`` (inner product, BM25 or fused)."""

    rank: int
    score: float
    chunk: Chunk


@dataclass
class SearchResult:
    """The hits of one query; ``truncated``: the query was cut to the embedder's limit."""

    query: str
    method: str
    hits: list[Hit]
    truncated: bool = False


class Retriever:
    """``Retriever(index, embedder).search(query, k, method)``.

    ``embedder`` is an ``Embedder``, a folder, or None for the folder recorded in the index; it
    is loaded (and checked against the index) only when a dense or hybrid search needs it.
    """

    def __init__(self, index: Index | str | Path,
                 embedder: Embedder | str | Path | None = None) -> None:
        self.index = index if isinstance(index, Index) else Index.load(index)
        self._embedder = embedder
        if isinstance(embedder, Embedder):
            self.index.check_embedder(embedder)

    @property
    def embedder(self) -> Embedder:
        if not isinstance(self._embedder, Embedder):
            folder = self._embedder or self.index.info.get("embedder_path")
            if folder is None or not Path(folder).is_dir():
                raise ConfigError(f"the embedder this index was built with ({folder}) is not "
                                  "there; give --embedder DIR (the same model)")
            self._embedder = Embedder(folder)
            self.index.check_embedder(self._embedder)
        return self._embedder

    def prepare(self, method: str = "hybrid") -> None:
        """Load what ``method`` searches with now (the embedder, checked against the index;
        BM25's statistics) rather than on the first search (a server does this at start)."""
        if method != "bm25":
            _ = self.embedder      # the property loads it
        if method != "dense":
            _ = self.index.bm25    # the property builds it

    def search(self, query: str, k: int = 5, method: str = "hybrid") -> SearchResult:
        """The ``k`` best chunks for ``query``."""
        return self.search_batch([query], k, method)[0]

    def search_batch(self, queries: Sequence[str], k: int = 5,
                     method: str = "hybrid") -> list[SearchResult]:
        """The ``k`` best chunks for each query (dense queries embedded together)."""
        embedded = self._embed(queries, k, method)
        ranked = self._rank(queries, k, method, embedded)
        return [SearchResult(q, method, [Hit(rank, score, self.index.chunks[i]) for rank, (i, score)
                                         in enumerate(rows, start=1)], cut)
                for q, rows, cut in zip(queries, ranked, _truncated(queries, embedded),
                                        strict=True)]

    def rank_documents(self, queries: Sequence[str], k: int,
                       method: str = "hybrid") -> tuple[list[list[str]], list[bool]]:
        """The ids of the ``k`` best *documents* for each query (a document ranks where its
        best chunk does), and which queries were truncated. Chunks are retrieved ever deeper
        until every query has ``k`` distinct documents or the index is exhausted."""
        embedded = self._embed(queries, k, method)
        depth = k
        while True:
            ranked = self._rank(queries, depth, method, embedded)
            documents = [list(dict.fromkeys(self.index.chunks[i].document_id for i, _ in rows))
                         for rows in ranked]
            if depth >= len(self.index) or all(len(d) >= k for d in documents):
                return [d[:k] for d in documents], _truncated(queries, embedded)
            depth *= 2

    def _embed(self, queries: Sequence[str], k: int, method: str) -> Embedded | None:
        """Check the request; the queries' embeddings where the method needs them."""
        if method not in METHODS:
            raise ConfigError(f"--method {method!r} is not a retrieval method; choose from "
                              f"{', '.join(METHODS)}")
        if k < 1:
            raise ConfigError(f"-k must be at least 1, got {k}")
        if any(not query.strip() for query in queries):
            raise ConfigError("the query is empty; give some text to search for")
        return None if method == "bm25" else self.embedder(list(queries))

    def _rank(self, queries: Sequence[str], depth: int, method: str,
              embedded: Embedded | None) -> list[list[tuple[int, float]]]:
        """``[(chunk index, score), ...]`` best first for each query, at most ``depth``."""
        if embedded is None:
            return [self._bm25(q, depth) for q in queries]
        wide = depth if method == "dense" else max(depth, FUSION_DEPTH)
        dense = self.index.search(embedded.vectors, wide)
        if method == "dense":
            return dense
        return [reciprocal_rank_fusion([[i for i, _ in rows],
                                        [i for i, _ in self._bm25(q, wide)]])[:depth]
                for q, rows in zip(queries, dense, strict=True)]

    def _bm25(self, query: str, depth: int) -> list[tuple[int, float]]:
        scores = self.index.bm25.scores(query)
        depth = min(depth, len(scores))
        top = np.argpartition(-scores, depth - 1)[:depth]
        top = top[np.lexsort((top, -scores[top]))]  # by score, ties by chunk order
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]


def _truncated(queries: Sequence[str], embedded: Embedded | None) -> list[bool]:
    """Which queries were cut to the embedder's limit (none, for BM25 alone)."""
    return [False] * len(queries) if embedded is None else embedded.truncated
