"""Finding the chunks of an index that answer a query: dense, BM25, or both fused.

- **dense**: the query's embedding against every chunk's (exact inner product, faiss);
- **bm25**: BM25 over the chunks' terms (``wxb.rag.bm25``); chunks sharing no term with the
  query are not returned;
- **hybrid**: the two rankings, each cut at ``FUSION_DEPTH`` (or the depth asked, if deeper),
  fused (``Fusion``) by either

  - ``rrf``, reciprocal-rank fusion (Cormack, Clarke and Büttcher, 2009): a chunk scores
    ``2w / (k + dense rank) + 2(1 - w) / (k + BM25 rank)``, ranks from 1, ``k = 60`` as in the
    paper; with the dense weight ``w = 0.5`` (the default) that is the paper's plain sum of
    ``1 / (k + rank)``;
  - ``convex``, a convex combination of the scores (Bruch, Gai and Ingber, "An Analysis of
    Fusion Functions for Hybrid Retrieval", 2023): each ranking's scores are min-max scaled to
    [0, 1] over its list (a list whose scores are all equal scales to 1), and a chunk scores
    ``w * dense + (1 - w) * BM25``.

  A chunk missing from a ranking gets nothing from it. The fusion an index is searched with is
  the one recorded in it (``Index.info["fusion"]``: ``wxb rag index --fusion --dense-weight``,
  or the weight ``wxb recipe run retrieval-eval`` chose on held-out queries), else plain RRF.

A query longer than the embedder's limit is truncated for the dense side; the result says so
(``SearchResult.truncated``) rather than warning.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from wxb.errors import CheckpointError, ConfigError
from wxb.rag.chunk import Chunk
from wxb.rag.embed import Embedded, Embedder
from wxb.rag.index import Index

METHODS: tuple[str, ...] = ("dense", "bm25", "hybrid")
FUSIONS: tuple[str, ...] = ("rrf", "convex")
RRF_K = 60
FUSION_DEPTH = 100
Id = TypeVar("Id", bound=Hashable)


def reciprocal_rank_fusion(rankings: Iterable[Sequence[Id]], k: int = RRF_K,
                           weights: Sequence[float] | None = None) -> list[tuple[Id, float]]:
    """Fuse rankings (ids, best first): ``[(id, sum of weight / (k + rank)), ...]``, best
    first (every weight 1 unless given); ties keep the order in which ids were first met."""
    rankings = list(rankings)
    weights = [1.0] * len(rankings) if weights is None else weights
    scores: dict[Id, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])


def convex_fusion(scored: Iterable[Sequence[tuple[Id, float]]],
                  weights: Sequence[float]) -> list[tuple[Id, float]]:
    """Fuse scored rankings (``[(id, score), ...]``): ``[(id, sum of weight * its min-max
    scaled score), ...]``, best first; ties keep the order in which ids were first met."""
    fused: dict[Id, float] = {}
    for rows, weight in zip(scored, weights, strict=True):
        if not rows:
            continue
        low = min(score for _, score in rows)
        span = max(score for _, score in rows) - low
        for item, score in rows:
            scaled = (score - low) / span if span > 0 else 1.0
            fused[item] = fused.get(item, 0.0) + weight * scaled
    return sorted(fused.items(), key=lambda pair: -pair[1])


@dataclass(frozen=True)
class Fusion:
    """How hybrid search fuses the dense and BM25 rankings: ``how`` (``rrf`` or ``convex``,
    see the module's docstring) and the dense ranking's weight ``dense_weight`` in [0, 1]
    (BM25's is ``1 - dense_weight``)."""

    how: str = "rrf"
    dense_weight: float = 0.5

    def __post_init__(self) -> None:
        if self.how not in FUSIONS:
            raise ConfigError(f"--fusion {self.how!r} is not a fusion; choose from "
                              f"{', '.join(FUSIONS)}")
        if isinstance(self.dense_weight, bool) or not isinstance(self.dense_weight, int | float) \
                or not 0.0 <= self.dense_weight <= 1.0:
            raise ConfigError(f"--dense-weight must be a number from 0 to 1, got "
                              f"{self.dense_weight!r}")

    @classmethod
    def of(cls, index: Index, how: str | None = None,
           dense_weight: float | None = None) -> Fusion:
        """The fusion recorded in an index (plain RRF where none is), with ``how`` or
        ``dense_weight`` replaced where given."""
        recorded = index.info.get("fusion", {})
        if not isinstance(recorded, dict) or not set(recorded) <= {"how", "dense_weight"}:
            raise CheckpointError(f"the index's fusion {recorded!r} is not one (expected "
                                  '{"how": "rrf" or "convex", "dense_weight": 0 to 1}); '
                                  "rebuild the index or give --fusion and --dense-weight")
        recorded = cls(**recorded)
        given = {k: v for k, v in (("how", how), ("dense_weight", dense_weight)) if v is not None}
        return replace(recorded, **given)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __call__(self, dense: list[tuple[int, float]],
                 bm25: list[tuple[int, float]]) -> list[tuple[int, float]]:
        """The fused ``[(chunk index, score), ...]``, best first."""
        if self.how == "convex":
            return convex_fusion([dense, bm25], (self.dense_weight, 1.0 - self.dense_weight))
        return reciprocal_rank_fusion([[i for i, _ in dense], [i for i, _ in bm25]],
                                      weights=(2 * self.dense_weight,
                                               2 * (1.0 - self.dense_weight)))


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
    ``fusion`` is how hybrid search fuses (default: the index's, see the module's docstring).
    The last batch of queries' embeddings and BM25 rankings are kept, so that ranking the same
    queries again (with another fusion) costs only the fusion.
    """

    def __init__(self, index: Index | str | Path,
                 embedder: Embedder | str | Path | None = None,
                 fusion: Fusion | None = None) -> None:
        self.index = index if isinstance(index, Index) else Index.load(index)
        self._embedder = embedder
        if isinstance(embedder, Embedder):
            self.index.check_embedder(embedder)
        self.fusion = fusion or Fusion.of(self.index)
        self._last_embedded: tuple[tuple[str, ...], Embedded] | None = None
        self._last_bm25: tuple[tuple[tuple[str, ...], int], list[Any]] | None = None

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
        ranked = self._rank(queries, k, method, embedded, self.fusion)
        return [SearchResult(q, method, [Hit(rank, score, self.index.chunks[i]) for rank, (i, score)
                                         in enumerate(rows, start=1)], cut)
                for q, rows, cut in zip(queries, ranked, _truncated(queries, embedded),
                                        strict=True)]

    def rank_documents(self, queries: Sequence[str], k: int, method: str = "hybrid",
                       fusion: Fusion | None = None) -> tuple[list[list[str]], list[bool]]:
        """The ids of the ``k`` best *documents* for each query (a document ranks where its
        best chunk does), and which queries were truncated; ``fusion`` replaces the
        retriever's for this call. Chunks are retrieved ever deeper until every query has
        ``k`` distinct documents or the index is exhausted."""
        embedded = self._embed(queries, k, method)
        depth = k
        while True:
            ranked = self._rank(queries, depth, method, embedded, fusion or self.fusion)
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
        if method == "bm25":
            return None
        key = tuple(queries)
        if self._last_embedded is None or self._last_embedded[0] != key:
            self._last_embedded = key, self.embedder(list(queries))
        return self._last_embedded[1]

    def _rank(self, queries: Sequence[str], depth: int, method: str,
              embedded: Embedded | None, fusion: Fusion) -> list[list[tuple[int, float]]]:
        """``[(chunk index, score), ...]`` best first for each query, at most ``depth``."""
        if embedded is None:
            return self._bm25_batch(queries, depth)
        wide = depth if method == "dense" else max(depth, FUSION_DEPTH)
        dense = self.index.search(embedded.vectors, wide)
        if method == "dense":
            return dense
        return [fusion(rows, terms)[:depth]
                for rows, terms in zip(dense, self._bm25_batch(queries, wide), strict=True)]

    def _bm25_batch(self, queries: Sequence[str], depth: int) -> list[list[tuple[int, float]]]:
        key = tuple(queries), depth
        if self._last_bm25 is None or self._last_bm25[0] != key:
            self._last_bm25 = key, [self._bm25(q, depth) for q in queries]
        return self._last_bm25[1]

    def _bm25(self, query: str, depth: int) -> list[tuple[int, float]]:
        scores = self.index.bm25.scores(query)
        depth = min(depth, len(scores))
        top = np.argpartition(-scores, depth - 1)[:depth]
        top = top[np.lexsort((top, -scores[top]))]  # by score, ties by chunk order
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]


def _truncated(queries: Sequence[str], embedded: Embedded | None) -> list[bool]:
    """Which queries were cut to the embedder's limit (none, for BM25 alone)."""
    return [False] * len(queries) if embedded is None else embedded.truncated
