"""SQuAD-format files (SQuAD v1.1 and v2.0, CMRC 2018): questions on passages, with their
answers, and splits that keep a whole article (or passage) on one side.

The format::

    {"version": "v2.0", "data": [{"title": "Normans", "paragraphs": [{"context": "...",
        "qas": [{"id": "56dd...", "question": "...", "answers": [{"text": "France",
                 "answer_start": 159}, ...], "is_impossible": false}, ...]}, ...]}, ...]}

A question with no answers (SQuAD v2.0 marks it ``is_impossible: true``) is unanswerable; a
file holding one is a v2.0 file (``version_2_with_negative``), whatever its ``version`` says.

Answers whose ``answer_start`` does not point at their text (``context[answer_start:
answer_start + len(text)] != text``; CMRC 2018's dev set has 200 of 9,657, most with
``answer_start: -1``) are **skipped and counted**: a question's training label is its first
answer that does match, and an answerable question with none gets no label (it is left out
of training, counted in ``unlabelled``). Scores read the answer texts alone, as the official
scripts do, so every answer still counts as gold there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from wxb.errors import DataError
from wxb.io import read_json_object

SplitBy = Literal["article", "context"]


@dataclasses.dataclass(frozen=True)
class SquadQuestion:
    """One question on one passage: its gold ``answers`` (texts, as many as the file gives;
    none for an unanswerable question) and the answer it learns from, ``label`` = (first
    character, text) of its first answer whose offset matches (None: no such answer)."""

    id: str
    question: str
    context: str
    answers: tuple[str, ...]
    label: tuple[int, str] | None
    article: int  # index of its article in the file
    title: str

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


@dataclasses.dataclass
class SquadData:
    """The questions of a file, whether any is unanswerable, and how many answers were
    skipped as labels (``misaligned``) and answerable questions left without one
    (``unlabelled``)."""

    questions: list[SquadQuestion]
    version_2_with_negative: bool
    misaligned: int = 0
    unlabelled: int = 0


def read_squad(path: str | Path) -> SquadData:
    """Every question of the SQuAD-format JSON file ``path``, in file order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; give a SQuAD-format JSON file")
    articles = read_json_object(path, DataError).get("data")
    if not isinstance(articles, list) or not articles:
        raise DataError(f"{path} has no \"data\" list of articles; a SQuAD file is "
                        "{\"data\": [{\"title\", \"paragraphs\": [{\"context\", \"qas\"}]}]}")
    questions: list[SquadQuestion] = []
    seen: set[str] = set()
    misaligned = 0
    for a, article in enumerate(articles):
        place = f"{path}: data[{a}]"
        paragraphs = _field(article, "paragraphs", list, place)
        title = article.get("title") if isinstance(article.get("title"), str) else str(a)
        for p, paragraph in enumerate(paragraphs):
            context = _field(paragraph, "context", str, f"{place}.paragraphs[{p}]")
            for q, qa in enumerate(_field(paragraph, "qas", list, f"{place}.paragraphs[{p}]")):
                where = f"{place}.paragraphs[{p}].qas[{q}]"
                qid = str(_field(qa, "id", (str, int), where))
                if qid in seen:
                    raise DataError(f"{path}: question id {qid} occurs twice; ids must be "
                                    "unique (predictions are keyed by them)")
                seen.add(qid)
                answers = _answers(qa, f"{path}: question {qid}")
                label = next(((start, text) for start, text in answers
                              if start >= 0 and context[start:start + len(text)] == text
                              and text.strip()), None)
                misaligned += sum(start < 0 or context[start:start + len(text)] != text
                                  for start, text in answers)
                questions.append(SquadQuestion(
                    qid, _field(qa, "question", str, where), context,
                    tuple(text for _, text in answers), label, a, title))
    if not questions:
        raise DataError(f"{path} holds no questions")
    return SquadData(questions, any(not q.answerable for q in questions), misaligned,
                     sum(q.answerable and q.label is None for q in questions))


def _field(values: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(values, dict) or not isinstance(values.get(key), kind):
        raise DataError(f"{where} has no {key!r} (or it is not a "
                        f"{kind.__name__ if isinstance(kind, type) else kind[0].__name__})")
    return values[key]


def _answers(qa: dict[str, Any], where: str) -> list[tuple[int, str]]:
    """(answer_start, text) of each answer; none for an unanswerable question."""
    answers = qa.get("answers", [])
    if not isinstance(answers, list) or not all(
            isinstance(x, dict) and isinstance(x.get("text"), str)
            and isinstance(x.get("answer_start"), int) for x in answers):
        raise DataError(f"{where}: answers must be a list of {{\"text\": str, "
                        "\"answer_start\": int}}")
    if qa.get("is_impossible") is True and answers:
        raise DataError(f"{where} is marked is_impossible but has answers; an unanswerable "
                        "question has \"answers\": [] (SQuAD 2.0 keeps the others as "
                        "plausible_answers)")
    return [(x["answer_start"], x["text"]) for x in answers]


def split_questions(questions: Sequence[SquadQuestion], *, by: SplitBy = "article",
                    validation_size: float = 0.1, test_size: float = 0.1,
                    seed: int = 0) -> dict[str, list[SquadQuestion]]:
    """A seeded split into train / validation / test by whole articles (``by="article"``) or
    whole passages (``by="context"``: every question on the same context text together), so
    that no passage of a held-out split was trained on. The sizes are shares of the articles
    (or passages), at least one each when above 0; a split of size 0 is left out."""
    import torch

    key = (lambda q: q.article) if by == "article" else (lambda q: q.context)
    groups: dict[Any, list[SquadQuestion]] = {}
    for question in questions:
        groups.setdefault(key(question), []).append(question)
    names = list(groups)
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist()
    counts = {name: max(1, round(size * len(names))) if size > 0 else 0
              for name, size in (("test", test_size), ("validation", validation_size))}
    what = "articles" if by == "article" else "passages"
    if sum(counts.values()) >= len(names):
        raise DataError(f"cannot hold out {counts['test']} test and {counts['validation']} "
                        f"validation {what} of {len(names)}: nothing would be left to train "
                        "on; lower test_size / validation_size")
    splits, start = {}, 0
    for name in ("test", "validation"):
        taken = order[start:start + counts[name]]
        start += counts[name]
        if taken:
            splits[name] = [q for i in sorted(taken) for q in groups[names[i]]]
    return {"train": [q for i in sorted(order[start:]) for q in groups[names[i]]], **splits}
