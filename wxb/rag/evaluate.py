"""Scoring retrieval against queries with known answers (``wxb rag eval``).

A queries file is JSON lines, one query a line::

    {"id": "q1", "query": "When is the office open?", "gold": "faq:3"}
    {"query": "...", "gold": ["doc-a", "doc-b"]}          # several relevant documents
    {"query": "...", "gold": {"doc-a": 2, "doc-b": 1}}     # graded relevance

``gold`` names document ids of the index; ``id`` defaults to the line number. Each method ranks
*documents* (a document at the rank of its best chunk) and ``wxb.metrics.retrieval`` scores the
rankings: hit rate, recall and MRR at each cutoff, nDCG too.

``cross_fit_fusion`` chooses hybrid search's dense weight on queries with known answers without
letting any query choose its own: the queries are dealt into folds, and each fold is ranked with
the weight that scores best on the other folds.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wxb.errors import ConfigError, DataError
from wxb.metrics.retrieval import METRICS, SCORES, retrieval_metrics
from wxb.rag.retrieve import METHODS, Fusion, Retriever

WEIGHTS = tuple(round(0.05 * i, 2) for i in range(1, 20))   # 0.05, 0.10, ..., 0.95


@dataclass(frozen=True)
class Query:
    """A query with its relevant documents (``gold``: ``{document id: grade}``)."""

    id: str
    text: str
    gold: dict[str, float]


def read_queries(path: str | Path) -> list[Query]:
    """The queries of a JSON-lines file (see the module's docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"queries file {path} does not exist")
    queries = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                values = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}, line {number}: not JSON ({err.msg})") from None
            queries.append(_query(values, path, number))
    if not queries:
        raise DataError(f"{path} holds no query; write one JSON object a line: "
                        '{"query": "...", "gold": "document id"}')
    ids = [q.id for q in queries]
    if len(set(ids)) != len(ids):
        repeated = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"{path}: two queries have the id {repeated!r}")
    return queries


def _query(values: Any, path: Path, number: int) -> Query:
    where = f"{path}, line {number}"
    if not isinstance(values, dict):
        raise DataError(f"{where}: not a JSON object; write "
                        '{"query": "...", "gold": "document id"}')
    text = values.get("query")
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where}: \"query\" must be a non-empty string, got {text!r}")
    gold = values.get("gold")
    if isinstance(gold, str | int):
        gold = {str(gold): 1.0}
    elif isinstance(gold, list) and all(isinstance(g, str | int) for g in gold):
        gold = {str(g): 1.0 for g in gold}
    elif isinstance(gold, dict) and all(isinstance(v, int | float) for v in gold.values()):
        gold = {str(k): float(v) for k, v in gold.items()}
    else:
        raise DataError(f"{where}: \"gold\" must be a document id, a list of them or "
                        f"{{id: grade}}, got {gold!r}")
    if not any(grade > 0 for grade in gold.values()):
        raise DataError(f"{where}: \"gold\" names no relevant document (grade > 0)")
    return Query(str(values.get("id", number)), text, gold)


def check_gold(retriever: Retriever, queries: Sequence[Query]) -> None:
    """Refuse a query whose gold document is not in the index."""
    known = {c.document_id for c in retriever.index.chunks}
    for query in queries:
        unknown = [doc for doc in query.gold if doc not in known]
        if unknown:
            example = next(iter(sorted(known)))
            raise DataError(f"query {query.id!r}: gold document {unknown[0]!r} is not in the "
                            f"index (its ids look like {example!r})")


def evaluate(retriever: Retriever, queries: Sequence[Query],
             methods: Sequence[str] = METHODS, ks: Sequence[int] = (1, 5, 10),
             metrics: Sequence[str] = METRICS) -> dict[str, Any]:
    """``{"queries", "truncated_queries", "metrics": {method: {"recall@5": ..., ...}}}``."""
    check_gold(retriever, queries)
    judgements = {q.id: q.gold for q in queries}
    table: dict[str, dict[str, float]] = {}
    truncated = 0
    for method in methods:
        ranked, cut = retriever.rank_documents([q.text for q in queries], max(ks), method)
        truncated = max(truncated, sum(cut))
        rankings = {q.id: docs for q, docs in zip(queries, ranked, strict=True)}
        table[method] = retrieval_metrics(rankings, judgements, ks, metrics)
    return {"queries": len(queries), "truncated_queries": truncated, "metrics": table}


def cross_fit_fusion(retriever: Retriever, queries: Sequence[Query], how: str = "convex",
                     weights: Sequence[float] = WEIGHTS, folds: int = 5, seed: int = 0,
                     metric: str = "ndcg@10", depth: int = 10) -> dict[str, Any]:
    """Hybrid rankings (``depth`` documents a query) whose dense weight no query chose for
    itself: the queries, shuffled with ``seed``, are dealt into ``folds``; each fold is ranked
    with the weight of ``weights`` whose mean ``metric`` is best on the other folds (ties: the
    first). Returns ``{"rankings": {query id: [document ids]}, "fold_weights": [one a fold],
    "weight": the best on all the queries (for queries to come), "scores": {weight: mean
    metric over all the queries}, "folds": {query id: its fold}}``. With fewer queries than
    ``folds``, each query is a fold of its own."""
    name, _, cut = metric.partition("@")
    if name not in SCORES or not cut.isdigit():
        raise ConfigError(f"metric {metric!r} is not one of {', '.join(SCORES)} at a cutoff, "
                          "e.g. ndcg@10")
    if folds < 2:
        raise ConfigError(f"folds must be at least 2, got {folds}")
    if len(queries) < 2:
        raise DataError("choosing a fusion weight on held-out queries needs at least 2 "
                        f"queries, got {len(queries)}")
    folds = min(folds, len(queries))
    if not weights:
        raise ConfigError("give at least one dense weight to choose from")
    check_gold(retriever, queries)
    texts = [q.text for q in queries]
    ranked = {w: retriever.rank_documents(texts, depth, "hybrid", Fusion(how, w))[0]
              for w in weights}
    score = {w: [SCORES[name](docs, q.gold, int(cut)) for docs, q in zip(ranked[w], queries,
                                                                           strict=True)]
             for w in weights}
    order = list(range(len(queries)))
    random.Random(seed).shuffle(order)
    fold_of = {query: position % folds for position, query in enumerate(order)}
    rankings, fold_weights = {}, []
    for fold in range(folds):
        others = [i for i in order if fold_of[i] != fold]
        best = max(weights, key=lambda w: sum(score[w][i] for i in others))
        fold_weights.append(best)
        rankings.update({queries[i].id: ranked[best][i] for i in order if fold_of[i] == fold})
    means = {w: sum(values) / len(values) for w, values in score.items()}
    return {"rankings": rankings, "fold_weights": fold_weights,
            "weight": max(weights, key=means.__getitem__), "scores": means,
            "folds": {queries[i].id: fold_of[i] for i in range(len(queries))}}
