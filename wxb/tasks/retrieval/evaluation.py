"""Retrieval evaluation as a recipe (task ``retrieval-eval``): for each configured set, an index
of its passages, its queries scored with dense, BM25 and hybrid retrieval side by side.

    model: {pretrained: sentence-transformers/all-MiniLM-L6-v2}   # the embedder
    data:
      sets:
        - {name: faq, format: pairs, path: course/faq_hsinchu.csv}   # question / answer columns
        - {name: squad2, format: squad, path: squad2_dev_subset/squad2_dev_first5.json,
           chunk_size: 128}                                          # this set's own chunking
    index: {chunk_by: tokens, chunk_size: 128, overlap: 32, save: true}
    fusion: {how: convex, folds: 5, seed: 0}       # the hybrid row's fusion, its weight chosen

A set is one of:

- **pairs**: a table of question/answer pairs (``question_column``, ``answer_column``). Each
  question is a query; the index holds the answers only (the question text is never indexed);
  a query's gold passage is its own pair's answer. Answers that are the same text (after
  stripping) are indexed once, as the document of their first row, and every question of
  those rows has that document as its gold (``shared_gold`` counts such questions).
- **squad**: a SQuAD-format file (``wxb.data.squad``; CMRC 2018 too). Each *answerable*
  question is a query against all paragraphs of its file; its gold is its own paragraph
  (paragraphs of the same text are one document). Unanswerable questions are skipped and
  counted.

Documents are chunked (``wxb.rag.chunk``; by tokens of the embedder by default; a set's
``chunk_by`` / ``chunk_size`` / ``overlap`` replace the index section's for it) and ranked by
their best chunk (``wxb.rag.evaluate``). Four methods are scored (``ROWS``): ``dense``,
``bm25``, ``rrf`` (plain reciprocal-rank fusion, equal weights, k = 60) and ``hybrid`` (the
``fusion`` section's: by default the convex combination of min-max scaled scores, its dense
weight cross-fitted: the queries are dealt into ``folds`` and each fold is ranked with the
weight from ``weights`` that has the best nDCG@10 on the other folds, so that no query's score
comes from a weight chosen on it; ``wxb.rag.evaluate.cross_fit_fusion``). result.json's
``fusion`` records each set's fold weights and the weight that is best over all its queries,
which is the fusion its saved index is searched with.

The metrics (``wxb.metrics.retrieval``, as trec_eval) are hit rate, recall and MRR at 1, 5 and
10 and nDCG at the same cutoffs, named ``<set>_<method>_<metric>@<k>``;
``<set>_hybrid_margin_ndcg@10`` is hybrid's nDCG@10 minus the better of dense and BM25 on that
set, and ``hybrid_margin_ndcg@10`` the smallest over the sets (>= 0: hybrid at least as good as
the better single method everywhere). ``<set>_best_recall@5`` is the best method's recall@5
(``best`` in result.json names the method). With ``index.save`` each set's index is kept under
``<output_dir>/indexes/<set>`` (search it with ``wxb rag search``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from wxb.errors import ConfigError, DataError
from wxb.tasks.run import Run
from wxb.tasks.sections import Section

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
ROWS = ("dense", "bm25", "rrf", "hybrid")
CUTOFFS = (1, 5, 10)
COMPARED = "ndcg@10"   # the score hybrid is compared on
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


@dataclasses.dataclass
class EmbedderSection(Section):
    """The embedder: a BERT-family folder or hub id (pooled as its folder says)."""

    pretrained: str = MINILM


@dataclasses.dataclass
class SetSection(Section):
    """One set to score: its ``name`` (in the metric names), its ``format`` and file; a
    pairs table's question and answer columns; chunking of its own (where not given: the
    index section's)."""

    name: str | None = None
    format: Literal["pairs", "squad"] | None = None
    path: str | None = None
    question_column: str = "question"
    answer_column: str = "answer"
    chunk_by: Literal["tokens", "sentences", "paragraphs"] | None = None
    chunk_size: int | None = None
    overlap: int | None = None

    def check(self) -> None:
        where = self.section_name
        for key, what in (("name", "a name for its metrics, e.g. faq"),
                          ("format", "pairs (a question/answer table) or squad"),
                          ("path", "the file, relative to --data-dir")):
            if getattr(self, key) is None:
                raise ConfigError(f"{where}.{key} is required: {what}")
        if not NAME.fullmatch(self.name):
            raise ConfigError(f"{where}.name {self.name!r} must be letters, digits and _ "
                              "(starting with a letter): it begins the metric names")


@dataclasses.dataclass
class DataSection(Section):
    """The sets (each a ``SetSection`` mapping), scored in order."""

    sets: list[dict] = dataclasses.field(default_factory=list)

    def check(self) -> None:
        if not self.sets:
            raise ConfigError("data.sets is required: a list of sets, e.g. [{name: faq, "
                              "format: pairs, path: course/faq_hsinchu.csv}]")
        self.parsed = [SetSection.from_dict(s, f"data.sets[{i}]")
                       for i, s in enumerate(self.sets)]
        names = [s.name for s in self.parsed]
        repeated = next((n for n in names if names.count(n) > 1), None)
        if repeated is not None:
            raise ConfigError(f"data.sets: two sets are named {repeated!r}; give each its own")


@dataclasses.dataclass
class IndexSection(Section):
    """How passages are chunked (as ``wxb rag index``'s flags: the defaults of ``chunk_by``
    where a size or overlap is not given), whether each set's index is saved, and the
    embedder's batch size."""

    chunk_by: Literal["tokens", "sentences", "paragraphs"] = "tokens"
    chunk_size: int | None = None
    overlap: int | None = None
    save: bool = True
    batch_size: int = 32

    def check(self) -> None:
        from wxb.rag.chunk import chunk_settings

        self.chunk_size, self.overlap = chunk_settings(self.chunk_by, self.chunk_size,
                                                       self.overlap)
        if self.batch_size < 1:
            raise ConfigError(f"index.batch_size must be at least 1, got {self.batch_size}")


@dataclasses.dataclass
class FusionSection(Section):
    """The hybrid row's fusion (``rrf`` or ``convex``) and how its dense weight is chosen:
    from ``weights``, cross-fitted over ``folds`` of the queries dealt with ``seed``."""

    how: Literal["rrf", "convex"] = "convex"
    weights: list[float] = dataclasses.field(default_factory=lambda: list(_weights()))
    folds: int = 5
    seed: int = 0

    def check(self) -> None:
        if not self.weights or not all(isinstance(w, int | float) and 0 <= w <= 1
                                       for w in self.weights):
            raise ConfigError(f"fusion.weights must be a list of numbers from 0 to 1, got "
                              f"{self.weights!r}")
        if self.folds < 2:
            raise ConfigError(f"fusion.folds must be at least 2, got {self.folds}")


def _weights() -> tuple[float, ...]:
    from wxb.rag.evaluate import WEIGHTS

    return WEIGHTS


SECTIONS = {"model": EmbedderSection, "data": DataSection, "index": IndexSection,
            "fusion": FusionSection}


def metric_names(sets: list[SetSection]) -> list[str]:
    """Every metric a run over ``sets`` reports (see the module's docstring)."""
    from wxb.metrics.retrieval import METRICS

    names = [f"{s.name}_{method}_{metric}@{k}" for s in sets for method in ROWS
             for metric in METRICS for k in CUTOFFS]
    names += [f"{s.name}_{what}" for s in sets for what in (f"hybrid_margin_{COMPARED}",
                                                            "best_recall@5")]
    return [*names, f"hybrid_margin_{COMPARED}"]


def read_set(spec: SetSection) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """The documents, the queries (with their gold document) and the counts of one set."""
    path = Path(spec.path)
    if spec.format == "pairs":
        return _pairs(path, spec)
    return _squad(path)


def _pairs(path: Path, spec: SetSection) -> tuple[list[Any], list[Any], dict[str, Any]]:
    from wxb.data.text import read_rows
    from wxb.rag.documents import Document
    from wxb.rag.evaluate import Query

    rows = read_rows(path)
    for column in (spec.question_column, spec.answer_column):
        if rows and column not in rows[0]:
            raise DataError(f"{path} has no column {column!r} (data.sets: {spec.name}); its "
                            f"columns are: {', '.join(map(str, rows[0]))}")
    documents, queries, by_answer, skipped = [], [], {}, 0
    for number, row in enumerate(rows, start=1):
        question = str(row.get(spec.question_column) or "").strip()
        answer = str(row.get(spec.answer_column) or "")
        if not question or not answer.strip():
            skipped += 1
            continue
        doc_id = by_answer.setdefault(answer.strip(), f"{path.stem}:{number}")
        if doc_id == f"{path.stem}:{number}":
            documents.append(Document(doc_id, answer, str(path)))
        queries.append(Query(str(number), question, {doc_id: 1.0}))
    gold = [next(iter(q.gold)) for q in queries]
    shared = sum(gold.count(g) > 1 for g in gold)
    return documents, queries, {"skipped": skipped, "shared_gold": shared}


def _squad(path: Path) -> tuple[list[Any], list[Any], dict[str, Any]]:
    from wxb.data.squad import read_squad
    from wxb.rag.documents import Document
    from wxb.rag.evaluate import Query

    data = read_squad(path)
    documents, queries, by_context = [], [], {}
    for question in data.questions:
        doc_id = by_context.get(question.context)
        if doc_id is None:
            doc_id = by_context[question.context] = f"{path.stem}:{len(by_context) + 1}"
            documents.append(Document(doc_id, question.context, str(path)))
        if question.answerable:
            queries.append(Query(question.id, question.question, {doc_id: 1.0}))
    if not queries:
        raise DataError(f"{path} has no answerable question to retrieve for")
    return documents, queries, {"skipped": len(data.questions) - len(queries)}


def evaluate_retrieval(config: dict[str, Any], *, resume: bool | str = False,
                       log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Score dense, BM25, plain RRF and the configured hybrid on every set; return the result
    (also written to ``result.json``). ``resume`` is accepted for the registry's signature:
    nothing here trains, so a run always starts over."""
    from wxb.hub import resolve
    from wxb.rag.embed import Embedder

    run = Run("retrieval-eval", config, SECTIONS, log=log)
    sets = run["data"].parsed
    run.expect(metric_names(sets))
    chunking = {spec.name: set_chunking(spec, run["index"]) for spec in sets}  # checked first
    folder = resolve(run["model"].pretrained)
    embedder = Embedder(folder, batch_size=run["index"].batch_size)
    metrics: dict[str, float] = {}
    records, table, best, fusion = [], {}, {}, {}
    for spec in sets:
        table[spec.name], fusion[spec.name], record = score_set(run, spec, embedder,
                                                                   chunking[spec.name])
        records.append(record)
        for method, scores in table[spec.name].items():
            metrics.update({f"{spec.name}_{method}_{k}": v for k, v in scores.items()})
        single = max(table[spec.name][m][COMPARED] for m in ("dense", "bm25"))
        metrics[f"{spec.name}_hybrid_margin_{COMPARED}"] = (
            table[spec.name]["hybrid"][COMPARED] - single)
        method = max(ROWS, key=lambda m: table[spec.name][m]["recall@5"])
        best[spec.name] = {"method": method, "recall@5": table[spec.name][method]["recall@5"]}
        metrics[f"{spec.name}_best_recall@5"] = best[spec.name]["recall@5"]
        for line in format_table(spec.name, table[spec.name]):
            run.log(line)
    metrics[f"hybrid_margin_{COMPARED}"] = min(
        metrics[f"{s.name}_hybrid_margin_{COMPARED}"] for s in sets)
    return run.finish(metrics, metric=f"hybrid_margin_{COMPARED}", model_dir=folder,
                      sets=records, table=table, best=best, fusion=fusion,
                      embedder=embedder.identity)


def set_chunking(spec: SetSection, index: IndexSection) -> tuple[str, int, int]:
    """A set's chunking: its own fields where given, else the index section's (but a set that
    chunks by another unit gets that unit's default size and overlap, not the section's)."""
    from wxb.rag.chunk import chunk_settings

    by = spec.chunk_by or index.chunk_by
    same = by == index.chunk_by
    size = spec.chunk_size if spec.chunk_size is not None else (index.chunk_size if same else None)
    overlap = spec.overlap if spec.overlap is not None else (index.overlap if same else None)
    return (by, *chunk_settings(by, size, overlap))


def score_set(run: Run, spec: SetSection, embedder: Any, chunking: tuple[str, int, int]
              ) -> tuple[dict[str, dict[str, float]], dict[str, Any], dict[str, Any]]:
    """One set's table (a row a method of ``ROWS``), its hybrid weights and its record."""
    from wxb.metrics.retrieval import retrieval_metrics
    from wxb.rag.chunk import chunk_documents
    from wxb.rag.evaluate import cross_fit_fusion, evaluate
    from wxb.rag.index import Index
    from wxb.rag.retrieve import METHODS, Fusion, Retriever

    index, settings = run["index"], run["fusion"]
    chunk_by, size, overlap = chunking
    documents, queries, counts = read_set(spec)
    chunks = chunk_documents(documents, chunk_by, size, overlap, tokenizer=embedder.tokenizer)
    run.log(f"{spec.name}: {len(queries)} queries, {len(documents)} documents -> "
            f"{len(chunks)} chunks ({chunk_by}, size {size}, overlap {overlap}); embedding")
    built = Index.build(chunks, embedder, {"chunking": {"by": chunk_by, "size": size,
                                                        "overlap": overlap}})
    retriever = Retriever(built, embedder, Fusion("rrf", 0.5))
    scored = evaluate(retriever, queries, METHODS, CUTOFFS)
    table = dict(scored["metrics"])
    table["rrf"] = table.pop("hybrid")
    fitted = cross_fit_fusion(retriever, queries, settings.how, settings.weights,
                              settings.folds, settings.seed, COMPARED, max(CUTOFFS))
    table["hybrid"] = retrieval_metrics(fitted["rankings"], {q.id: q.gold for q in queries},
                                        CUTOFFS)
    weights = {"how": settings.how, "fold_weights": fitted["fold_weights"],
               "weight": fitted["weight"]}
    run.log(f"{spec.name}: hybrid ({settings.how}) dense weights by fold "
            f"{fitted['fold_weights']}; over all the queries {fitted['weight']}")
    saved = None
    if index.save:
        built.info["fusion"] = Fusion(settings.how, fitted["weight"]).to_dict()
        saved = str(built.save(run.output_dir / "indexes" / spec.name))
    record = {"name": spec.name, "format": spec.format, "path": spec.path,
              "queries": len(queries), "documents": len(documents), "chunks": len(chunks),
              "chunking": built.info["chunking"],
              "truncated_chunks": built.info["truncated_chunks"],
              "truncated_queries": scored["truncated_queries"], **counts, "index": saved}
    return table, weights, record


def format_table(name: str, scores: dict[str, dict[str, float]]) -> list[str]:
    """One set's scores as the lines of a small table, a method a row."""
    columns = ("recall@1", "recall@5", "mrr@10", "ndcg@10", "hit_rate@10")
    lines = [f"{name:<10} " + " ".join(f"{c:>11}" for c in columns)]
    lines += [f"  {method:<8} " + " ".join(f"{row[c]:>11.4f}" for c in columns)
              for method, row in scores.items()]
    return lines
