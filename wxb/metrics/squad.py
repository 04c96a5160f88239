"""Extractive question answering scores: SQuAD's exact match and F1, as the official scripts
compute them, and CMRC 2018's for Chinese.

English (``language="en"``), the SQuAD v1.1 and v2.0 evaluation scripts:

- an answer is *normalized*: lower-cased, ASCII punctuation removed, the articles a / an / the
  removed, runs of whitespace made one space;
- **exact** is 1 when the normalized prediction equals a normalized gold answer; **F1** is the
  harmonic mean of precision and recall over the bag of normalized words (a word counts as
  often as it occurs in both); a question scores its best over its gold answers;
- v2.0 (``squad_v2``): a question with no gold answer, or none that normalizes to something,
  has the one gold answer ``""``: predicting ``""`` scores 1, anything else 0; an empty
  prediction for an answerable question scores 0. The results are the official script's keys
  on its 0-100 scale: ``exact, f1, total``, the same for the answerable questions
  (``HasAns_exact, HasAns_f1, HasAns_total``) and the unanswerable ones (``NoAns_...``), each
  only when there are such questions. With ``no_answer_probabilities`` (the script's
  ``--na-prob-file``), a question whose probability is above ``na_prob_thresh`` (default 1.0:
  never) counts as answered ``""``, and the best threshold is searched as the script does:
  ``best_exact, best_exact_thresh, best_f1, best_f1_thresh``;
- v1.1 (``squad_v1``): ``exact_match`` and ``f1``; every gold answer counts as given, an empty
  prediction scores 0, and a question with no prediction scores 0 (and counts in the total).

Chinese (``language="zh"``) follows the CMRC 2018 evaluation script (``cmrc2018_evaluate.py``)
instead: text is lower-cased and stripped and the script's punctuation list removed (ASCII
``- : _ * ^ / \\ ~ ` + =`` and the full-width
``，。：？！“”；’《》·、「」（）－～『』``; the script's ``……`` never matches, as it compares
one character at a time); **exact** compares those strings, and **F1** is computed on a
mixed segmentation (each Chinese character U+4E00-U+9FA5 is a token, the runs of other
characters are cut into words and punctuation) from the length of the *longest common
substring* of the two token sequences: precision = lcs / prediction tokens, recall = lcs /
gold tokens. The script splits the runs of other characters with ``nltk.word_tokenize``; here
a regular expression does (words, numbers with their decimal points, single punctuation
marks), which agrees on the words and numbers of CMRC answers and needs neither nltk nor its
downloaded data. The v2.0 rules for questions without an answer apply to Chinese too (CMRC
itself has none).
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Mapping, Sequence
from typing import Literal

from wxb.errors import DataError

Language = Literal["en", "zh"]
LANGUAGES = ("en", "zh")

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)
# cmrc2018_evaluate.py's sp_char, one character each.
_CMRC_PUNCTUATION = set("-:_*^/\\~`+=，。：？！“”；’《》·、「」（）－～『』")
_CJK = re.compile(r"[\u4e00-\u9fa5]")
_WORDS = re.compile(r"\w+(?:[.,]\w+)*|[^\w\s]")


# ----------------------------------------------------------------------------- one answer


def normalize_answer(text: str, language: Language = "en") -> str:
    """SQuAD's normalized answer (lower case, no punctuation, no articles, single spaces), or
    for ``"zh"`` CMRC's (lower case, stripped, its punctuation removed)."""
    if language == "zh":
        return "".join(ch for ch in text.lower().strip() if ch not in _CMRC_PUNCTUATION)
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str, language: Language = "en") -> list[str]:
    """The tokens F1 counts: SQuAD's normalized words, or CMRC's mixed segmentation (every
    Chinese character alone, the runs of other characters cut into words), punctuation out."""
    if language == "en":
        return normalize_answer(text).split()
    tokens: list[str] = []
    run = ""
    for ch in text.lower().strip():
        if ch in _CMRC_PUNCTUATION:
            continue
        if _CJK.match(ch):
            tokens += _WORDS.findall(run)
            run = ""
            tokens.append(ch)
        else:
            run += ch
    return tokens + _WORDS.findall(run)


def exact_score(gold: str, prediction: str, language: Language = "en") -> int:
    """1 when the normalized prediction equals the normalized gold answer, else 0."""
    return int(normalize_answer(gold, language) == normalize_answer(prediction, language))


def f1_score(gold: str, prediction: str, language: Language = "en", *,
             empty_agrees: bool = True) -> float:
    """The F1 of one prediction against one gold answer (0-1).

    English: over the bags of normalized words. Chinese: CMRC's, from the longest common
    substring of the two segmentations. When either side has no tokens, the score is whether
    both have none (SQuAD v2.0's rule for unanswerable questions); ``empty_agrees=False``
    gives v1.1's 0 instead.
    """
    gold_tokens, predicted = answer_tokens(gold, language), answer_tokens(prediction, language)
    if not gold_tokens or not predicted:
        return float(empty_agrees and gold_tokens == predicted)
    if language == "zh":
        same = _longest_common_substring(gold_tokens, predicted)
    else:
        same = sum((collections.Counter(gold_tokens) & collections.Counter(predicted)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _longest_common_substring(a: Sequence[str], b: Sequence[str]) -> int:
    """The length of the longest run of tokens that ``a`` and ``b`` share (contiguous)."""
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                current[j + 1] = previous[j] + 1
                best = max(best, current[j + 1])
        previous = current
    return best


# ----------------------------------------------------------------------------- a whole set


def squad_v1(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]], *,
             language: Language = "en") -> dict[str, float]:
    """SQuAD v1.1's ``{"exact_match", "f1"}`` (0-100) of ``predictions`` (question id ->
    answer text) against ``references`` (question id -> its gold answer texts). A question
    without a prediction scores 0; ids that are not in ``references`` are ignored. With
    ``language="zh"``, CMRC 2018's EM and F1 (its script calls them EM and F1)."""
    _check_language(language)
    if not references:
        raise DataError("no questions to score: references is empty")
    exact = f1 = 0.0
    for qid, golds in references.items():
        if qid not in predictions:
            continue
        if not golds:
            raise DataError(f"question {qid} has no gold answer; SQuAD v1.1 scores answerable "
                            "questions only (use squad_v2 for unanswerable ones)")
        prediction = predictions[qid]
        exact += max(exact_score(g, prediction, language) for g in golds)
        f1 += max(f1_score(g, prediction, language, empty_agrees=False) for g in golds)
    return {"exact_match": 100.0 * exact / len(references), "f1": 100.0 * f1 / len(references)}


def squad_v2(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]], *,
             no_answer_probabilities: Mapping[str, float] | None = None,
             na_prob_thresh: float = 1.0, language: Language = "en") -> dict[str, float]:
    """SQuAD v2.0's scores (0-100, the official script's keys; see the module docstring) of
    ``predictions`` (question id -> answer text, ``""`` for no answer) against ``references``
    (question id -> gold answer texts, empty for an unanswerable question).

    ``no_answer_probabilities`` (question id -> the model's probability that there is no
    answer) adds the threshold rule (``na_prob_thresh``) and the best thresholds. Every
    question of ``references`` needs a prediction (and a probability, when given).
    """
    _check_language(language)
    if not references:
        raise DataError("no questions to score: references is empty")
    missing = [qid for qid in references if qid not in predictions]
    if missing:
        raise DataError(f"no prediction for question {missing[0]} ({len(missing)} of "
                        f"{len(references)} questions have none); give one for each, \"\" "
                        "for no answer")
    probabilities = no_answer_probabilities
    if probabilities is not None:
        missing = [qid for qid in references if qid not in probabilities]
        if missing:
            raise DataError(f"no no-answer probability for question {missing[0]}")
    has_answer = {qid: bool(golds) for qid, golds in references.items()}
    exact_raw, f1_raw = {}, {}
    for qid, golds in references.items():
        kept = [g for g in golds if normalize_answer(g, language)] or [""]
        prediction = predictions[qid]
        exact_raw[qid] = max(exact_score(g, prediction, language) for g in kept)
        f1_raw[qid] = max(f1_score(g, prediction, language) for g in kept)
    chances = probabilities or {qid: 0.0 for qid in references}
    exact = _threshold(exact_raw, chances, has_answer, na_prob_thresh)
    f1 = _threshold(f1_raw, chances, has_answer, na_prob_thresh)
    scores = _summary(exact, f1, list(references))
    for prefix, wanted in (("HasAns", True), ("NoAns", False)):
        ids = [qid for qid, has in has_answer.items() if has == wanted]
        if ids:
            scores.update({f"{prefix}_{k}": v for k, v in _summary(exact, f1, ids).items()})
    if probabilities is not None:
        for name, raw in (("exact", exact_raw), ("f1", f1_raw)):
            best, thresh = _best_threshold(predictions, raw, probabilities, has_answer)
            scores[f"best_{name}"], scores[f"best_{name}_thresh"] = best, thresh
    return scores


def no_answer_baseline(references: Mapping[str, Sequence[str]], *,
                       language: Language = "en") -> dict[str, float]:
    """``squad_v2`` of the model that always answers ``""`` (the share of unanswerable
    questions: what a SQuAD 2.0 score must beat to mean anything)."""
    return squad_v2({qid: "" for qid in references}, references, language=language)


def _threshold(scores: dict[str, float], probabilities: Mapping[str, float],
               has_answer: dict[str, bool], thresh: float) -> dict[str, float]:
    """A question whose no-answer probability is above ``thresh`` counts as answered ""."""
    return {qid: float(not has_answer[qid]) if probabilities[qid] > thresh else s
            for qid, s in scores.items()}


def _summary(exact: dict[str, float], f1: dict[str, float],
             ids: list[str]) -> dict[str, float]:
    return {"exact": 100.0 * sum(exact[q] for q in ids) / len(ids),
            "f1": 100.0 * sum(f1[q] for q in ids) / len(ids), "total": len(ids)}


def _best_threshold(predictions: Mapping[str, str], scores: dict[str, float],
                    probabilities: Mapping[str, float],
                    has_answer: dict[str, bool]) -> tuple[float, float]:
    """The official search: start from "no answer everywhere" (each unanswerable question
    right), then answer the questions in order of rising no-answer probability, keeping the
    probability at which the total score was highest (first reached)."""
    score = best = sum(not has for has in has_answer.values())
    thresh = 0.0
    for qid in sorted(probabilities, key=lambda q: probabilities[q]):
        if qid not in scores:
            continue
        if has_answer[qid]:
            score += scores[qid]
        elif predictions[qid]:
            score -= 1
        if score > best:
            best, thresh = score, probabilities[qid]
    return 100.0 * best / len(scores), thresh


def _check_language(language: str) -> None:
    if language not in LANGUAGES:
        raise DataError(f"unknown language {language!r} for SQuAD scores; choose one of: "
                        f"{', '.join(LANGUAGES)} (zh: CMRC 2018's character-level scores)")
