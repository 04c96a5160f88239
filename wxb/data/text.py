"""Labelled text for classification: reading tables, naming the labels, tokenizing, padding.

    rows = read_rows("sst2/train.tsv")                       # .csv .tsv .jsonl .json
    data = text_examples(rows, "sst2/train.tsv", text_column="sentence", label_column="label")
    labels = LabelSet.from_values(data.labels)               # "0", "1" -> ids 0, 1
    dataset = encode_examples(data, labels, tokenizer, max_length=128)
    batch = PaddingCollator(tokenizer.pad_token_id)([dataset[0], dataset[1]])

Sentence pairs (AFQMC, NLI) name a second text column; the pair is cut to ``max_length`` with
``longest_first`` truncation, as ``transformers`` does: one token at a time from the longer of
the two.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from wxb.errors import DataError

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")


def read_rows(path: str | Path, fieldnames: list[str] | None = None) -> list[dict[str, Any]]:
    """The rows of a table: .csv / .tsv with a header row (or without one, when
    ``fieldnames`` names the columns), or .jsonl / .json with one JSON object per line (CLUE's
    files are JSON lines despite their suffix); any of them gzip-compressed (``.csv.gz``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    packed = path.suffix == ".gz"
    suffix = Path(path.stem).suffix if packed else path.suffix
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"data file {path} has suffix {path.suffix!r}; use one of: "
                        f"{', '.join(TABLE_SUFFIXES)} (or with .gz)")
    opener = gzip.open if packed else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        if suffix in (".csv", ".tsv"):
            # Quotes are part of SST-2's text ("a `` funny '' movie"), so TSV reads them as-is.
            reader = csv.DictReader(f, fieldnames, delimiter="\t", quoting=csv.QUOTE_NONE) \
                if suffix == ".tsv" else csv.DictReader(f, fieldnames)
            rows = list(reader)
            if reader.fieldnames is None:
                raise DataError(f"data file {path} is empty; it needs a header row")
            return rows
        rows = []
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}, line {number}: not a JSON object ({err.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}, line {number}: expected a JSON object, got "
                                f"{type(row).__name__}")
            rows.append(row)
        return rows


def read_column(sources: Sequence[dict[str, Any]]) -> list[str]:
    """The text in one column of every row of every table: ``sources`` are ``{path, column,
    columns (for a table without a header row)}`` (a corpus out of reviews, news, answers)."""
    texts = []
    for source in sources:
        rows = read_rows(source["path"], fieldnames=source.get("columns"))
        column = source["column"]
        if rows and column not in rows[0]:
            raise DataError(f"{source['path']} has no column {column!r}; its columns are: "
                            f"{', '.join(map(str, rows[0]))}")
        texts += [str(row[column] or "") for row in rows]
    return texts


@dataclass
class TextExamples:
    """Texts (and second texts of pairs) with their raw label values, as read."""

    texts: list[str]
    pairs: list[str] | None
    labels: list[str]


def text_examples(rows: list[dict[str, Any]], source: str | Path, *, text_column: str,
                  label_column: str, text_pair_column: str | None = None) -> TextExamples:
    """Pick the text, pair and label columns out of ``rows`` (read from ``source``)."""
    if not rows:
        raise DataError(f"data file {source} holds no rows")
    columns = list(rows[0])
    wanted = {"text_column": text_column, "label_column": label_column}
    if text_pair_column is not None:
        wanted["text_pair_column"] = text_pair_column
    for role, name in wanted.items():
        if name not in columns:
            raise DataError(f"{source} has no column {name!r} ({role}); its columns are: "
                            f"{', '.join(map(str, columns))}")
    for number, row in enumerate(rows, start=1):
        if any(row.get(name) is None for name in wanted.values()):
            missing = next(name for name in wanted.values() if row.get(name) is None)
            raise DataError(f"{source}, row {number}: no value in column {missing!r}")
    return TextExamples(
        texts=[str(row[text_column]) for row in rows],
        pairs=[str(row[text_pair_column]) for row in rows] if text_pair_column else None,
        labels=[str(row[label_column]).strip() for row in rows])


@dataclass
class LabelSet:
    """The label values a dataset uses, in a fixed order: value i is class id i. ``names``
    are what the model's ``id2label`` shows (the values themselves unless given)."""

    values: list[str]
    names: list[str]

    @classmethod
    def from_values(cls, values: Sequence[str],
                    names: dict[str, str] | None = None) -> LabelSet:
        """Sorted distinct values (numerically when they are all integers: "2" before "10")."""
        distinct = sorted(set(values), key=lambda v: (0, int(v), "") if _is_int(v) else (1, 0, v))
        names = names or {}
        return cls(distinct, [str(names.get(v, v)) for v in distinct])

    def ids(self, values: Sequence[str], source: str | Path) -> list[int]:
        index = {v: i for i, v in enumerate(self.values)}
        unknown = sorted(set(values) - set(index))
        if unknown:
            raise DataError(f"{source} has label {unknown[0]!r}, which the training data does "
                            f"not have; the labels are: {', '.join(self.values)}")
        return [index[v] for v in values]

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))


def _is_int(value: str) -> bool:
    return value.lstrip("-").isdigit()


class EncodedTexts(Dataset):
    """Tokenized examples: ``input_ids``, ``token_type_ids`` and ``labels`` per example."""

    def __init__(self, encodings: dict[str, list[list[int]]], labels: list[int]) -> None:
        self.encodings, self.labels = encodings, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**{k: v[i] for k, v in self.encodings.items()}, "labels": self.labels[i]}


def encode_examples(data: TextExamples, labels: LabelSet, tokenizer: Any, *, max_length: int,
                    truncation: bool = True, source: str | Path = "the data") -> EncodedTexts:
    """Tokenize every example (pairs as ``[CLS] a [SEP] b [SEP]``). With ``truncation`` the
    longest ones are cut to ``max_length`` (``longest_first``); without it an example that
    does not fit is an error naming it."""
    keys = ["input_ids", "token_type_ids"]
    encodings = tokenizer(data.texts, data.pairs, truncation="longest_first" if truncation
                          else False, max_length=max_length if truncation else None,
                          return_token_type_ids=True)
    encodings = {k: encodings[k] for k in keys if k in encodings}
    if not truncation:
        for i, ids in enumerate(encodings["input_ids"]):
            if len(ids) > max_length:
                raise DataError(f"{source}, example {i + 1}: {len(ids)} tokens, more than "
                                f"max_length {max_length}; turn truncation on (it cuts the "
                                "longer text of a pair first) or raise max_length")
    return EncodedTexts(encodings, labels.ids(data.labels, source))


def pad(rows: Sequence[Sequence[int]], value: int, width: int | None = None) -> torch.Tensor:
    """Rows of different lengths -> (len(rows), width) tensor, right-padded with ``value``;
    ``width`` defaults to the longest row."""
    width = width or max(len(r) for r in rows)
    return torch.tensor([list(r) + [value] * (width - len(r)) for r in rows])


class PaddingCollator:
    """Examples with ``input_ids`` (and ``labels``, and other per-token ids such as
    ``token_type_ids``, padded with 0) -> a padded batch with ``attention_mask``; batches are as
    long as their longest example. Labels are one per example (batch,), or one per token
    (batch, seq) padded with ``label_pad_token_id``."""

    def __init__(self, pad_token_id: int, label_pad_token_id: int = -100) -> None:
        self.pad_token_id = pad_token_id
        self.label_pad_token_id = label_pad_token_id

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = [e["input_ids"] for e in examples]
        batch = {"input_ids": pad(ids, self.pad_token_id),
                 "attention_mask": pad([[1] * len(i) for i in ids], 0)}
        for key in [k for k in examples[0] if k not in ("input_ids", "labels")]:
            batch[key] = pad([e[key] for e in examples], 0)
        if "labels" in examples[0]:
            labels = [e["labels"] for e in examples]
            if isinstance(labels[0], list):
                batch["labels"] = pad(labels, self.label_pad_token_id)
            else:
                batch["labels"] = torch.tensor(labels)
        return batch
