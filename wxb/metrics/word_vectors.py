"""How good word vectors are, without a labelled benchmark to download.

- **Analogies** ``a : b :: c : d`` (Mikolov et al. 2013's test; gensim's
  ``evaluate_word_analogies``): the answer is the nearest word to ``b - a + c`` over
  unit-normalised vectors, ``a``, ``b`` and ``c`` excluded, among the first ``restrict_vocab``
  words; a question with a word outside them is skipped and counted. The questions come from
  ``analogy_questions``: relations whose pairs are written below (capitals, nationalities,
  gender, comparatives, past tenses) plus one the corpus supplies itself (``w : w + "s"`` for
  frequent words whose ``-s`` form is frequent too), kept where both words are in the
  vocabulary.
- **Agreement of two models** (``similarity_correlation``): the Spearman correlation of their
  cosine similarities over every pair of a set of words, e.g. wxb's Word2Vec against gensim's
  trained on the same corpus. Two runs of one implementation with different seeds are the
  ceiling to read it against.

Vectors are anything with ``words``, ``index`` (word -> row) and ``vectors`` (n, d), such as
``wxb.data.vectors.WordVectors``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from itertools import combinations, permutations
from typing import Any

import numpy as np

RELATIONS: dict[str, str] = {
    "capital-country": (
        "athens greece baghdad iraq bangkok thailand beijing china berlin germany cairo egypt "
        "canberra australia dublin ireland havana cuba helsinki finland london britain madrid "
        "spain moscow russia oslo norway ottawa canada paris france rome italy stockholm sweden "
        "tokyo japan warsaw poland vienna austria brussels belgium lisbon portugal amsterdam "
        "netherlands ankara turkey tehran iran kabul afghanistan islamabad pakistan nairobi kenya "
        "hanoi vietnam manila philippines jakarta indonesia lima peru santiago chile caracas "
        "venezuela bern switzerland copenhagen denmark budapest hungary belgrade serbia bucharest "
        "romania sofia bulgaria damascus syria beirut lebanon amman jordan"),
    "country-nationality": (
        "germany german france french italy italian spain spanish china chinese japan japanese "
        "russia russian britain british america american canada canadian australia australian "
        "india indian brazil brazilian mexico mexican egypt egyptian greece greek sweden swedish "
        "norway norwegian denmark danish poland polish ireland irish turkey turkish iran iranian "
        "iraq iraqi israel israeli korea korean england english portugal portuguese netherlands "
        "dutch switzerland swiss austria austrian belgium belgian chile chilean peru peruvian "
        "pakistan pakistani thailand thai vietnam vietnamese cuba cuban finland finnish hungary "
        "hungarian"),
    "gender": (
        "man woman king queen he she his her boy girl brother sister father mother son daughter "
        "husband wife uncle aunt nephew niece actor actress prince princess men women boys girls "
        "grandfather grandmother mr mrs"),
    "comparative": (
        "great greater small smaller large larger big bigger old older young younger high higher "
        "low lower strong stronger long longer short shorter fast faster hard harder cheap "
        "cheaper easy easier bad worse good better"),
    "past-tense": (
        "go went see saw take took make made come came give gave get got find found know knew "
        "think thought say said tell told run ran write wrote play played walk walked look looked "
        "want wanted win won lose lost buy bought sell sold pay paid leave left begin began fall "
        "fell rise rose"),
}


def relation_pairs(name: str) -> list[tuple[str, str]]:
    """The written pairs of relation ``name`` (one of ``RELATIONS``)."""
    words = RELATIONS[name].split()
    return list(zip(words[::2], words[1::2], strict=True))


def plural_pairs(words: Sequence[str], *, top: int = 2000,
                 limit: int = 40) -> list[tuple[str, str]]:
    """``(w, w + "s")`` for the most frequent alphabetic words (``words`` most frequent first)
    whose ``-s`` form is among the ``top`` too; at most ``limit`` pairs, in frequency order."""
    frequent = list(words[:top])
    known = set(frequent)
    pairs = [(w, w + "s") for w in frequent
             if w.isalpha() and len(w) > 3 and not w.endswith("s") and w + "s" in known]
    return pairs[:limit]


def analogy_questions(words: Sequence[str], *, per_relation: int = 300,
                      top: int = 2000) -> dict[str, list[tuple[str, str, str, str]]]:
    """Questions ``(a, b, c, d)`` per relation, from the ordered pairs of two different pairs
    both in ``words`` (at most ``per_relation``, drawn with a fixed seed), plus the corpus's
    own ``plural`` relation."""
    known = set(words)
    relations = {name: [p for p in relation_pairs(name) if p[0] in known and p[1] in known]
                 for name in RELATIONS}
    relations["plural"] = plural_pairs(words, top=top)
    questions = {}
    for name, pairs in relations.items():
        rows = [(a, b, c, d) for (a, b), (c, d) in permutations(pairs, 2)]
        if len(rows) > per_relation:
            rows = random.Random(0).sample(rows, per_relation)
        if rows:
            questions[name] = rows
    return questions


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def analogy_accuracy(vectors: Any, questions: dict[str, list[tuple[str, str, str, str]]], *,
                     restrict_vocab: int | None = 30000) -> dict[str, Any]:
    """Top-1 accuracy over ``questions`` (3CosAdd: ``b - a + c``), overall and per relation,
    and how many questions were asked and skipped (a word beyond ``restrict_vocab``)."""
    limit = len(vectors.words) if restrict_vocab is None else min(restrict_vocab,
                                                                   len(vectors.words))
    unit = _unit(np.asarray(vectors.vectors[:limit], dtype=np.float32))
    index = {w: i for w, i in vectors.index.items() if i < limit}
    per: dict[str, float] = {}
    right = asked = skipped = 0
    for name, rows in questions.items():
        kept = [q for q in rows if all(w in index for w in q)]
        skipped += len(rows) - len(kept)
        if not kept:
            continue
        ids = np.array([[index[w] for w in q] for q in kept])
        query = unit[ids[:, 1]] - unit[ids[:, 0]] + unit[ids[:, 2]]
        scores = _unit(query) @ unit.T
        np.put_along_axis(scores, ids[:, :3], -np.inf, axis=1)  # the question's own words
        hits = int((scores.argmax(axis=1) == ids[:, 3]).sum())
        per[name] = hits / len(kept)
        right += hits
        asked += len(kept)
    return {"accuracy": right / asked if asked else 0.0, "questions": asked,
            "skipped": skipped, "per_relation": per}


def similarity_correlation(a: Any, b: Any, words: Sequence[str]) -> float:
    """Spearman correlation of the cosine similarities that ``a`` and ``b`` give every pair of
    ``words`` (each word in both)."""
    from scipy.stats import spearmanr

    if len(words) < 3:
        raise ValueError(f"similarity_correlation needs at least 3 words, got {len(words)}")
    first = _unit(np.stack([a.vectors[a.index[w]] for w in words]).astype(np.float32))
    second = _unit(np.stack([b.vectors[b.index[w]] for w in words]).astype(np.float32))
    rows, cols = np.array(list(combinations(range(len(words)), 2))).T
    return float(spearmanr((first @ first.T)[rows, cols], (second @ second.T)[rows, cols])[0])
