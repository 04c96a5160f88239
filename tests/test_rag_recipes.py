"""Retrieval as recipes: the assistant that rebuilds its system prompt every turn and keeps the
conversation in the right roles (wxb.rag.assistant, `wxb rag chat`), the retrieval-eval and
faq-assistant recipes through `wxb recipe run` on small stand-ins for their data, with MiniLM
and a tiny random chat model."""

from __future__ import annotations

import csv
import io
import json

import pytest
from test_rag import MINILM, run_wxb, save_chat_model

from wxb.errors import ConfigError
from wxb.metrics.retrieval import retrieval_metrics
from wxb.rag.assistant import Assistant
from wxb.rag.chunk import chunk_documents
from wxb.rag.documents import Document, read_documents
from wxb.rag.embed import Embedder
from wxb.rag.evaluate import Query, cross_fit_fusion, evaluate
from wxb.rag.index import Index
from wxb.rag.prompt import SYSTEM_TEMPLATE, numbered_passages, with_passages
from wxb.rag.retrieve import Fusion, Retriever
from wxb.recipes import load_recipe, run_recipe
from wxb.tasks import run_task
from wxb.tasks.models import load_chat_model

TOPICS = ["bicycle rental opening hours", "parking fees downtown", "city card replacement",
          "drone flying zones", "traffic light countdown", "village chief term of office"]


def faq_rows(count: int) -> list[dict[str, str]]:
    """A stand-in for the Hsinchu FAQ (an unnamed first column, question, answer): row n
    about one of the topics; rows 30 and 31 (when there are) share one answer, as in the real
    file, and row 5 has no answer."""
    rows = []
    for n in range(1, count + 1):
        topic = TOPICS[n % len(TOPICS)]
        rows.append({"": str(n - 1), "question": f"What about {topic}, case {n}?",
                     "answer": f"Answer {n}: the rules for {topic} are on page {n}."})
    if count > 30:
        rows[30]["answer"] = rows[29]["answer"]
    rows[4]["answer"] = ""
    return rows


def write_faq(path, count: int = 80) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, ["", "question", "answer"])
        writer.writeheader()
        writer.writerows(faq_rows(count))


def question(qid: str, text: str, context: str, answer: str | None) -> dict:
    """A SQuAD question on ``context``; unanswerable when ``answer`` is None."""
    answers = [] if answer is None else [{"text": answer, "answer_start": context.index(answer)}]
    return {"id": qid, "question": text, "answers": answers, "is_impossible": answer is None}


def write_squad(path, chinese: bool = False) -> None:
    """Two articles, three paragraphs (two of them the same text), three answerable
    questions and one unanswerable."""
    if chinese:
        first, second = "公共自行車服務中心週三至週日開放。", "無人機在紅區不可以飛行。"
        asked = ["服務中心哪天開放？", "天空為什麼是綠色？", "服務中心幾點開？",
                 "紅區可以飛無人機嗎？"]
    else:
        first = "The Normans were in Normandy in the 10th century."
        second = "Computational complexity theory classifies problems by difficulty."
        asked = ["Who was in Normandy?", "Why is the sky green?", "When were they there?",
                 "What does the theory classify?"]
    data = [{"title": "one", "paragraphs": [
                {"context": first, "qas": [question("q1", asked[0], first, first[:6]),
                                           question("q2", asked[1], first, None)]},
                {"context": first, "qas": [question("q3", asked[2], first, first[-8:])]}]},
            {"title": "two", "paragraphs": [
                {"context": second, "qas": [question("q4", asked[3], second, second[:6])]}]}]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "v2.0", "data": data}, ensure_ascii=False),
                    encoding="utf-8")


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(MINILM)


@pytest.fixture(scope="module")
def retriever(embedder) -> Retriever:
    docs = [Document(f"faq:{n}", f"Q: {r['question']}\nA: {r['answer']}", "faq.csv")
            for n, r in enumerate(faq_rows(12), start=1) if r["answer"]]
    return Retriever(Index.build(chunk_documents(docs, "tokens", 512, 0,
                                                 tokenizer=embedder.tokenizer), embedder),
                     embedder)


@pytest.fixture(scope="module")
def chat_folder(tmp_path_factory):
    return save_chat_model(tmp_path_factory.mktemp("chat") / "chat")


@pytest.fixture(scope="module")
def chat_model(chat_folder):
    return load_chat_model(str(chat_folder))


# ----------------------------------------------------------------------------- the assistant


def test_with_passages_keeps_a_system_message_and_numbers_the_passages(retriever):
    hits = retriever.search("drone flying zones", k=2, method="dense").hits
    messages, prompt = with_passages([{"role": "user", "content": "drones?"}], hits)
    assert messages[0] == {"role": "system", "content": SYSTEM_TEMPLATE.replace(
        "{passages}", f"[1] {hits[0].chunk.text}\n\n[2] {hits[1].chunk.text}")}
    assert messages[1] == {"role": "user", "content": "drones?"}
    assert prompt.sources[1]["text"] == hits[1].chunk.text
    assert prompt.sources[0]["document_id"] == hits[0].chunk.document_id
    messages, _ = with_passages([{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": "drones?"}], hits, "P: {passages}")
    assert messages[0]["content"] == f"Be brief.\n\nP: {numbered_passages(hits)}"
    assert len(messages) == 2
    with pytest.raises(ConfigError, match=r"system_prompt has no \{passages\}: write"):
        Assistant(retriever, None, None, "Answer briefly.")


def test_the_assistant_rebuilds_its_prompt_each_turn_and_keeps_the_roles(retriever,
                                                                         chat_model):
    model, tokenizer = chat_model
    assistant = Assistant(retriever, model, tokenizer, "Answer from {passages} {{kept}}", k=2,
                          max_new_tokens=4)
    first = assistant.reply([], "When can I rent a bicycle?")
    hits = retriever.search("When can I rent a bicycle?", 2, "dense").hits
    assert first.system == f"Answer from {numbered_passages(hits)} {{{{kept}}}}"
    assert [s["chunk_id"] for s in first.sources] == [h.chunk.id for h in hits]
    assert first.history == [{"role": "user", "content": "When can I rent a bicycle?"},
                             {"role": "assistant", "content": first.text}]
    second = assistant.prepare(first.history, "And the village chief's term?")
    other = retriever.search("And the village chief's term?", 2, "dense").hits
    assert second.system == f"Answer from {numbered_passages(other)} {{{{kept}}}}"
    assert second.chat.messages == [{"role": "system", "content": second.system},
                                    *first.history]
    "".join(second.stream())
    assert [m["role"] for m in second.history] == ["user", "assistant"] * 2
    assert second.history[2]["content"] == "And the village chief's term?"
    with pytest.raises(ConfigError, match=r"history\[0\] must be a user or assistant turn"):
        assistant.prepare([{"role": "system", "content": "x"}], "hi")


def test_passages_that_do_not_fit_the_context_are_left_out(retriever, chat_folder):
    model, tokenizer = load_chat_model(str(chat_folder))  # its own copy: the window changes
    assistant = Assistant(retriever, model, tokenizer, "P: {passages}", k=5, max_new_tokens=8)
    whole = assistant.prepare([], "parking fees")
    assert whole.dropped == 0 and len(whole.sources) == 5
    text = tokenizer.apply_chat_template([{"role": "system", "content": whole.system},
                                          {"role": "user", "content": "parking fees"}],
                                         add_generation_prompt=True, tokenize=False)
    model.config.max_position_embeddings = len(tokenizer.encode(text)) + 8 - 1
    cut = assistant.prepare([], "parking fees")
    assert cut.dropped >= 1 and len(cut.sources) == 5 - cut.dropped
    assert [s["chunk_id"] for s in cut.sources] == [s["chunk_id"] for s in
                                                    whole.sources][:len(cut.sources)]
    model.config.max_position_embeddings = 10
    with pytest.raises(ConfigError, match="context window of 10 tokens; start a new "
                                          "conversation"):
        assistant.prepare([], "parking fees")


# ----------------------------------------------------------------------------- the recipes


def test_retrieval_eval_recipe_runs_on_stand_ins(tmp_path, monkeypatch, capsys, embedder):
    monkeypatch.chdir(tmp_path)
    write_faq(tmp_path / "course" / "faq_hsinchu.csv", count=40)
    write_squad(tmp_path / "squad2_dev_subset" / "squad2_dev_first5.json")
    write_squad(tmp_path / "cmrc2018" / "cmrc2018_dev.json", chinese=True)
    recipe = load_recipe("retrieval-eval")
    assert recipe["expected"] == {"metric": "hybrid_margin_ndcg@10", "at_least": 0.0}
    assert recipe["reported"]["hybrid_margin_ndcg@10"] >= 0  # measured: cross-fitted convex
    code, _, err = run_wxb(capsys, "recipe", "run", "retrieval-eval", "--data-dir", tmp_path)
    assert code in (0, None), err
    result = json.loads((tmp_path / "runs" / "retrieval-eval" / "result.json").read_text())
    assert result["task"] == "retrieval-eval" and result["metric"] == "hybrid_margin_ndcg@10"
    assert {"cpu", "threads"} <= set(result["machine"])
    assert list(result["table"]) == ["faq", "squad2", "cmrc2018"]
    assert all(list(t) == ["dense", "bm25", "rrf", "hybrid"] for t in result["table"].values())
    faq, squad, cmrc = result["sets"]
    # 40 rows, one without an answer; rows 30 and 31 share one answer text, indexed once.
    assert (faq["queries"], faq["documents"], faq["skipped"], faq["shared_gold"]) == (
        39, 38, 1, 2)
    # Three answerable questions of four; two paragraphs have the same text: one document.
    assert (squad["queries"], squad["documents"], squad["skipped"]) == (3, 2, 1)
    assert cmrc["queries"] == 3
    margins = [result["metrics"][f"{s}_hybrid_margin_ndcg@10"] for s in result["table"]]
    assert result["value"] == result["metrics"]["hybrid_margin_ndcg@10"] == min(margins)
    assert result["expected"]["met"] == (min(margins) >= 0)
    best = result["best"]["faq"]
    assert result["metrics"]["faq_best_recall@5"] == best["recall@5"] == max(
        result["table"]["faq"][m]["recall@5"] for m in ("dense", "bm25", "rrf", "hybrid"))

    # The table is wxb.rag.evaluate's on the saved index, the gold each pair's own answer:
    # plain RRF as the rrf row, the convex fusion cross-fitted over 5 folds as the hybrid row.
    index = Index.load(faq["index"])
    assert len({c.document_id for c in index.chunks}) == 38
    assert faq["chunking"] == {"by": "tokens", "size": 4096, "overlap": 0}   # the set's own
    assert squad["chunking"] == {"by": "tokens", "size": 128, "overlap": 32}
    fusion = result["fusion"]["faq"]
    assert index.info["fusion"] == {"how": "convex", "dense_weight": fusion["weight"]}
    rows = faq_rows(40)
    ids = {r["answer"]: f"faq_hsinchu:{n}" for n, r in reversed(list(enumerate(rows, 1)))}
    queries = [Query(str(n), r["question"], {ids[r["answer"]]: 1.0})
               for n, r in enumerate(rows, 1) if r["answer"]]
    assert queries[29].gold == queries[28].gold == {"faq_hsinchu:30": 1.0}
    plain = Retriever(index, embedder, Fusion("rrf", 0.5))
    direct = evaluate(plain, queries, ks=(1, 5, 10))["metrics"]
    direct["rrf"] = direct.pop("hybrid")
    fitted = cross_fit_fusion(plain, queries, "convex", folds=5, seed=0)
    assert fitted["fold_weights"] == fusion["fold_weights"] and len(fusion["fold_weights"]) == 5
    direct["hybrid"] = retrieval_metrics(fitted["rankings"], {q.id: q.gold for q in queries})
    for method, scores in direct.items():
        assert scores == pytest.approx(result["table"]["faq"][method])
    code, stdout, err = run_wxb(capsys, "rag", "search", squad["index"], "Normans", "-k", "1")
    assert code in (0, None) and "squad2_dev_first5:1" in stdout


def test_retrieval_eval_refuses_a_bad_set_in_one_line(tmp_path):
    config = {"data": {"sets": [{"name": "faq", "format": "pairs"}]},
              "training": {"output_dir": str(tmp_path)}}
    with pytest.raises(ConfigError, match=r"^data\.sets\[0\]\.path is required"):
        run_task("retrieval-eval", config)
    config["data"]["sets"] = [{"name": "faq", "format": "csv", "path": "x"}]
    with pytest.raises(ConfigError, match=r"unknown data\.sets\[0\]\.format 'csv'"):
        run_task("retrieval-eval", config)
    config["data"]["sets"] = [{"name": "a", "format": "squad", "path": "x"}] * 2
    with pytest.raises(ConfigError, match="two sets are named 'a'"):
        run_task("retrieval-eval", config)
    config["data"]["sets"] = [{"name": "faq", "format": "pairs", "path": "x", "colour": 1}]
    with pytest.raises(ConfigError, match=r"unknown data\.sets\[0\] field 'colour'"):
        run_task("retrieval-eval", config)


def test_faq_assistant_recipe_and_rag_chat_on_stand_ins(tmp_path, monkeypatch, capsys,
                                                        chat_folder):
    monkeypatch.chdir(tmp_path)
    write_faq(tmp_path / "course" / "faq_hsinchu.csv")
    recipe = load_recipe("faq-assistant")
    assert "你是新竹市政府的客服人員" in recipe["assistant"]["system_prompt"]
    assert "{passages}" in recipe["assistant"]["system_prompt"]
    assert recipe["reported"]["retrieval_hit_rate"] == 0.67  # measured with SmolLM2, hybrid
    assert "the course stored the user's words as the assistant's turn" in recipe["description"]
    result = run_recipe("faq-assistant", tmp_path, overrides={
        "model": {"pretrained": str(chat_folder)},
        "assistant": {"max_new_tokens": 4}})
    assert result["task"] == "rag-assistant" and result["metric"] == "retrieval_hit_rate"
    answers = result["answers"]
    assert [a["question"] for a in answers] == [q["question"] for q in
                                                recipe["samples"]["questions"]]
    assert all(len(a["sources"]) + a["dropped_passages"] == 10 for a in answers)
    assert all(a["hit"] == (a["gold_rank"] is not None) for a in answers)
    assert answers[3]["gold"] == ["faq_hsinchu:30", "faq_hsinchu:31"]
    assert result["value"] == sum(a["hit"] for a in answers) / 6
    conversation = result["conversation"]
    assert [m["role"] for m in conversation] == ["user", "assistant"] * 6
    assert [m["content"] for m in conversation[::2]] == [a["question"] for a in answers]
    assert [m["content"] for m in conversation[1::2]] == [a["answer"] for a in answers]
    index = tmp_path / "runs" / "faq-assistant" / "index"
    assert len(Index.load(index)) == 80  # one pair (its question and answer) a passage
    settings = recipe["assistant"]
    assert Index.load(index).info["fusion"] == {"how": settings["fusion"],
                                                "dense_weight": settings["dense_weight"]}
    retriever = Retriever(index, MINILM)          # searching as the index says: the same passages
    for a in answers:
        hits = retriever.search(a["question"], 10, settings["method"]).hits
        assert [s["chunk_id"] for s in a["sources"]] == [h.chunk.id for h in hits][
            :len(a["sources"])]
    assert read_documents([tmp_path / "course" / "faq_hsinchu.csv"],
                          template="問：{question}\n答：{answer}")[2].id == "faq_hsinchu:3"

    monkeypatch.setattr("sys.stdin", io.StringIO("city card replacement\n\n/reset\nexit\n"))
    code, stdout, err = run_wxb(capsys, "rag", "chat", index, "--model", chat_folder,
                                "--max-new-tokens", "3", "-k", "2", "--system",
                                "答：{passages}")
    assert code in (0, None), err
    assert stdout.count("assistant> ") == 1 and "(conversation forgotten)" in stdout
    assert "sources:\n[1] faq_hsinchu:" in stdout and "[2] faq_hsinchu:" in stdout
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # end of input ends the chat
    code, stdout, err = run_wxb(capsys, "rag", "chat", index, "--model", chat_folder)
    assert code in (0, None), err


def test_faq_assistant_refuses_a_gold_that_is_not_a_document(tmp_path, chat_folder):
    write_faq(tmp_path / "faq.csv", count=5)
    config = {"model": {"pretrained": str(chat_folder)}, "embedder": {"pretrained": str(MINILM)},
              "data": {"path": str(tmp_path / "faq.csv"), "template": "{question} {answer}"},
              "samples": {"questions": [{"question": "hi", "gold": "faq:99"}]},
              "training": {"output_dir": str(tmp_path / "run")}}
    with pytest.raises(ConfigError, match=r"samples\.questions\[0\]\.gold 'faq:99' is not a "
                                          r"document of .*faq\.csv \(its ids look like "
                                          r"'faq:1'\)"):
        run_task("rag-assistant", config)
    config["samples"] = {"questions": [{"question": "hi"}]}
    with pytest.raises(ConfigError, match=r"samples\.questions\[0\] must be \{question: text, "
                                          "gold"):
        run_task("rag-assistant", config)
    config["samples"] = {"questions": [{"question": "hi", "gold": "faq:1"}]}
    config["assistant"] = {"system_prompt": "no place for them"}
    with pytest.raises(ConfigError, match=r"assistant\.system_prompt has no \{passages\}"):
        run_task("rag-assistant", config)
