"""Retrieval scores: hit rate@k, recall@k, MRR@k and nDCG@k, as ``trec_eval`` defines them.

A query's *ranking* is the list of retrieved ids, best first; its *judgements* are the
relevant ids, as a collection (each relevant with grade 1) or as ``{id: grade}`` (grades are
numbers; an id with grade 0 or less is not relevant). An id repeated in a ranking counts at its
first place only (several chunks of one document retrieve the document once).

- **hit rate@k** (trec_eval's ``success_k``): 1 when a relevant id is in the top k, else 0;
- **recall@k**: the relevant ids in the top k over all the query's relevant ids;
- **MRR@k** (the mean of ``recip_rank`` over rankings cut at k): 1 / the rank of the first
  relevant id in the top k, 0 when there is none;
- **nDCG@k** (``ndcg_cut_k``): DCG@k = sum over the top k of grade / log2(rank + 1), divided by
  the DCG@k of the ideal ranking (every judged id sorted by grade). Gains are the grades
  themselves (linear, as trec_eval; with binary judgements every gain is 1).

``retrieval_metrics`` averages each over the queries, as ``trec_eval -m all_trec`` reports
the mean over the judged queries.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence

from wxb.errors import DataError

Judgements = Mapping[str, float] | Collection[str]

METRICS = ("hit_rate", "recall", "mrr", "ndcg")


def _grades(relevant: Judgements) -> dict[str, float]:
    """``{id: grade}`` of the relevant ids only (grade > 0)."""
    grades = dict(relevant) if isinstance(relevant, Mapping) else dict.fromkeys(relevant, 1.0)
    return {doc: float(grade) for doc, grade in grades.items() if grade > 0}


def _top(ranking: Iterable[str], k: int) -> list[str]:
    """The first k distinct ids of a ranking, in order."""
    if k < 1:
        raise DataError(f"a cutoff k must be at least 1, got {k}")
    seen: dict[str, None] = {}
    for doc in ranking:
        seen.setdefault(doc, None)
        if len(seen) == k:
            break
    return list(seen)


def hit_rate_at_k(ranking: Sequence[str], relevant: Judgements, k: int) -> float:
    """1.0 when a relevant id is among the first k, else 0.0."""
    grades = _grades(relevant)
    return float(any(doc in grades for doc in _top(ranking, k)))


def recall_at_k(ranking: Sequence[str], relevant: Judgements, k: int) -> float:
    """The share of the relevant ids found among the first k (0.0 when none is relevant)."""
    grades = _grades(relevant)
    if not grades:
        return 0.0
    return sum(doc in grades for doc in _top(ranking, k)) / len(grades)


def reciprocal_rank_at_k(ranking: Sequence[str], relevant: Judgements, k: int) -> float:
    """1 / the rank (from 1) of the first relevant id among the first k, else 0.0."""
    grades = _grades(relevant)
    return next((1.0 / rank for rank, doc in enumerate(_top(ranking, k), start=1)
                 if doc in grades), 0.0)


def ndcg_at_k(ranking: Sequence[str], relevant: Judgements, k: int) -> float:
    """DCG@k / ideal DCG@k with linear gains (the grades) and a log2(rank + 1) discount."""
    grades = _grades(relevant)
    ideal = sorted(grades.values(), reverse=True)[:k]
    best = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, start=1))
    if best == 0:
        return 0.0
    found = sum(grades.get(doc, 0.0) / math.log2(rank + 1)
                for rank, doc in enumerate(_top(ranking, k), start=1))
    return found / best


SCORES = {"hit_rate": hit_rate_at_k, "recall": recall_at_k, "mrr": reciprocal_rank_at_k,
          "ndcg": ndcg_at_k}


def retrieval_metrics(rankings: Mapping[str, Sequence[str]], judgements: Mapping[str, Judgements],
                      ks: Sequence[int] = (1, 5, 10),
                      metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """``{"recall@5": mean over the queries, ...}`` for every metric and cutoff.

    ``rankings`` and ``judgements`` are keyed by query id; every judged query needs a ranking
    (an empty one scores 0) and at least one relevant id.
    """
    unknown = [m for m in metrics if m not in SCORES]
    if unknown:
        raise DataError(f"unknown retrieval metric {unknown[0]!r}; choose from "
                        f"{', '.join(SCORES)}")
    if not judgements:
        raise DataError("no judged query to score")
    for query, relevant in judgements.items():
        if not _grades(relevant):
            raise DataError(f"query {query!r} has no relevant id (give it at least one)")
    missing = [q for q in judgements if q not in rankings]
    if missing:
        raise DataError(f"query {missing[0]!r} has judgements but no ranking")
    return {f"{name}@{k}": sum(SCORES[name](rankings[q], judgements[q], k)
                               for q in judgements) / len(judgements)
            for name in metrics for k in ks}
