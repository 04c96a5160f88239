"""Sequence-labelling metrics for BIO tags (NER): entity-level and the course's token-level F1.

Entity level (CoNLL's conlleval, and ``seqeval``'s default): an entity is a maximal run that
starts with ``B-X``, or with ``I-X`` after a tag of another type or ``O``, and continues with
``I-X``; it counts as found only when its type and both ends are right.

Token level, as the course computed it: micro-F1 over the tokens, leaving out the ``O`` class
(a token counts as predicted when its predicted tag is not ``O``, as relevant when its true tag
is not ``O``, and as a hit when both agree). It is kinder than entity F1: half an entity scores.
"""

from __future__ import annotations

from collections.abc import Sequence

from wxb.errors import DataError


def entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The (type, first, last) spans of a BIO tag sequence."""
    found = set()
    start, kind = 0, None
    for i, tag in enumerate([*tags, "O"]):
        if tag == "O":
            prefix, tag_kind = "O", None
        elif tag[:2] in ("B-", "I-"):
            prefix, tag_kind = tag[0], tag[2:]
        else:
            raise DataError(f"tag {tag!r} is not BIO: use O, B-TYPE or I-TYPE")
        begins = prefix == "B" or (prefix == "I" and tag_kind != kind)
        if kind is not None and (prefix == "O" or begins):
            found.add((kind, start, i - 1))
            kind = None
        if begins:
            start, kind = i, tag_kind
    return found


def _f1(hits: int, predicted: int, relevant: int) -> dict[str, float]:
    precision = hits / predicted if predicted else 0.0
    recall = hits / relevant if relevant else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _check(true: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> None:
    if len(true) != len(predicted) or any(len(a) != len(b) for a, b in zip(
            true, predicted, strict=False)):
        raise DataError("true and predicted tags must have the same sentences and lengths")


def entity_scores(true: Sequence[Sequence[str]],
                  predicted: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro precision, recall and F1 over the entities of every sentence."""
    _check(true, predicted)
    hits = found = relevant = 0
    for gold, guess in zip(true, predicted, strict=True):
        a, b = entities(gold), entities(guess)
        hits, found, relevant = hits + len(a & b), found + len(b), relevant + len(a)
    return _f1(hits, found, relevant)


def token_scores_without_o(true: Sequence[Sequence[str]],
                           predicted: Sequence[Sequence[str]]) -> dict[str, float]:
    """The course's token-level micro precision, recall and F1, the ``O`` class left out."""
    _check(true, predicted)
    pairs = [(a, b) for gold, guess in zip(true, predicted, strict=True)
             for a, b in zip(gold, guess, strict=True)]
    hits = sum(a == b != "O" for a, b in pairs)
    return _f1(hits, sum(b != "O" for _, b in pairs), sum(a != "O" for a, _ in pairs))
