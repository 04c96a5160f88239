"""Scoring retrieval against queries with known answers (``wxb rag eval``).

A queries file is JSON lines, one query a line::

    {"id": "q1", "query": "When is the office open?", "gold": "faq:3"}
    {"query": "...", "gold": ["doc-a", "doc-b"]}          # several relevant documents
    {"query": "...", "gold": {"doc-a": 2, "doc-b": 1}}     # graded relevance

``gold`` names document ids of the index; ``id`` defaults to the line number. Each method ranks
*documents* (a document at the rank of its best chunk) and ``wxb.metrics.retrieval`` scores the
rankings: hit rate, recall and MRR at each cutoff, nDCG too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wxb.errors import DataError
from wxb.metrics.retrieval import METRICS, retrieval_metrics
from wxb.rag.retrieve import METHODS, Retriever


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


def evaluate(retriever: Retriever, queries: Sequence[Query],
             methods: Sequence[str] = METHODS, ks: Sequence[int] = (1, 5, 10),
             metrics: Sequence[str] = METRICS) -> dict[str, Any]:
    """``{"queries", "truncated_queries", "metrics": {method: {"recall@5": ..., ...}}}``."""
    known = {c.document_id for c in retriever.index.chunks}
    for query in queries:
        unknown = [doc for doc in query.gold if doc not in known]
        if unknown:
            example = next(iter(sorted(known)))
            raise DataError(f"query {query.id!r}: gold document {unknown[0]!r} is not in the "
                            f"index (its ids look like {example!r})")
    judgements = {q.id: q.gold for q in queries}
    table: dict[str, dict[str, float]] = {}
    truncated = 0
    for method in methods:
        ranked, cut = retriever.rank_documents([q.text for q in queries], max(ks), method)
        truncated = max(truncated, sum(cut))
        rankings = {q.id: docs for q, docs in zip(queries, ranked, strict=True)}
        table[method] = retrieval_metrics(rankings, judgements, ks, metrics)
    return {"queries": len(queries), "truncated_queries": truncated, "metrics": table}
