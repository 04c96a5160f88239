"""Sentence pairs for translation: reading them, a leak-free split, encoding and batching.

    rows = read_rows("translate_zh_en.csv")
    pairs = sentence_pairs(rows, "translate_zh_en.csv", "chinese", "english")
    splits = split_by_source(pairs.pairs, test_size=0.1, validation_size=0.05, seed=0)

A sentence can have several translations in a corpus (Tatoeba has "Hi." for both 嗨。 and
你好。, and 你好。 more than once); splitting by source sentence keeps every copy of a source
on one side, so no test source was seen in training.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from wxb.data.text import pad
from wxb.errors import DataError


@dataclass
class SentencePairs:
    """The (source, target) pairs kept, and how many rows were skipped for an empty side."""

    pairs: list[tuple[str, str]]
    skipped_empty: int = 0


def sentence_pairs(rows: list[dict[str, Any]], source: str | Path, source_column: str,
                   target_column: str, *,
                   column_keys: tuple[str, str] = ("source_column", "target_column")
                   ) -> SentencePairs:
    """The pairs of a table's two columns; a row whose source or target is empty (or only
    whitespace) is skipped and counted. ``column_keys`` are the config keys naming the
    columns, for the error on a missing one."""
    if not rows:
        raise DataError(f"{source} has no rows")
    for column in (source_column, target_column):
        if column not in rows[0]:
            raise DataError(f"{source} has no column {column!r}; its columns are: "
                            f"{', '.join(map(str, rows[0]))} (set data.{column_keys[0]} and "
                            f"data.{column_keys[1]})")
    kept, skipped = [], 0
    for row in rows:
        pair = (str(row[source_column] or "").strip(), str(row[target_column] or "").strip())
        if pair[0] and pair[1]:
            kept.append(pair)
        else:
            skipped += 1
    if not kept:
        raise DataError(f"{source}: every one of its {len(rows)} rows has an empty side")
    return SentencePairs(kept, skipped)


def split_by_source(pairs: Sequence[tuple[str, str]], *, test_size: float,
                    validation_size: float, seed: int) -> dict[str, list[tuple[str, str]]]:
    """A seeded split into train / validation / test by distinct source sentence: the
    fractions are of the distinct sources, and every pair of a source goes where it goes."""
    for name, size in (("test_size", test_size), ("validation_size", validation_size)):
        if not 0 <= size < 1:
            raise DataError(f"data.{name} must be a fraction in [0, 1), got {size}")
    sources = list(dict.fromkeys(s for s, _ in pairs))
    random.Random(seed).shuffle(sources)
    n_test, n_val = round(test_size * len(sources)), round(validation_size * len(sources))
    if n_test + n_val >= len(sources):
        raise DataError(f"{len(sources)} distinct source sentences leave nothing to train on "
                        f"after test_size {test_size} and validation_size {validation_size}")
    side = {s: "test" for s in sources[:n_test]}
    side.update({s: "validation" for s in sources[n_test:n_test + n_val]})
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "validation": [], "test": []}
    for pair in pairs:
        splits[side.get(pair[0], "train")].append(pair)
    return {name: part for name, part in splits.items() if part}


@dataclass
class EncodedPairs(Dataset):
    """Token ids of pairs: ``input_ids`` (source) and ``labels`` (target, ending with eos);
    ``truncated`` counts the sources and the targets that were cut to fit."""

    input_ids: list[list[int]]
    labels: list[list[int]]
    truncated: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return {"input_ids": self.input_ids[i], "labels": self.labels[i]}


def encode_pairs(pairs: Sequence[tuple[str, str]], source_tokenizer: Any,
                 target_tokenizer: Any, *, max_source_length: int,
                 max_target_length: int) -> EncodedPairs:
    """Encode each side; a source longer than ``max_source_length`` tokens is cut, a target
    keeps its first ``max_target_length - 1`` tokens and then the eos token."""
    eos = target_tokenizer.eos_token_id
    if eos is None:
        raise DataError("the target tokenizer has no eos token; a decoder needs one to stop")
    sources = source_tokenizer([s for s, _ in pairs])["input_ids"]
    targets = target_tokenizer([t for _, t in pairs])["input_ids"]
    cut = {"source": sum(len(s) > max_source_length for s in sources),
           "target": sum(len(t) + 1 > max_target_length for t in targets)}
    return EncodedPairs([s[:max_source_length] for s in sources],
                        [[*t[:max_target_length - 1], eos] for t in targets], cut)


class Seq2SeqCollator:
    """Examples -> a batch: ``input_ids`` right-padded with ``pad_token_id``, its
    ``attention_mask``, and ``labels`` padded with -100 (ignored by the loss)."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, examples: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        ids = [e["input_ids"] or [self.pad_token_id] for e in examples]
        return {"input_ids": pad(ids, self.pad_token_id),
                "attention_mask": pad([[1] * len(i) for i in ids], 0),
                "labels": pad([e["labels"] for e in examples], -100)}
