"""Extractive question answering: the SQuAD / CMRC metrics on hand-computed cases and against
torchmetrics."""

from __future__ import annotations

import pytest

from wxb.errors import DataError
from wxb.metrics.squad import (
    answer_tokens,
    exact_score,
    f1_score,
    no_answer_baseline,
    normalize_answer,
    squad_v1,
    squad_v2,
)

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
