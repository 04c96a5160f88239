"""Data settings and splits that several tasks share."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from wxb.errors import ConfigError
from wxb.tasks.sections import Section

DEFAULT_VALIDATION_SIZE = 0.05


@dataclasses.dataclass
class HeldOutData(Section):
    """A data section whose validation split is a file of its own (``validation``) or a seeded
    share of ``train`` held out (``validation_size``, default 0.05, with ``split_seed``)."""

    train: str | None = None
    validation: str | None = None
    validation_size: float | None = None
    split_seed: int = 0

    def check(self) -> None:
        if self.validation is not None and self.validation_size is not None:
            raise ConfigError("data: give validation (a file) or validation_size (a share of "
                              "data.train held out), not both")
        if self.validation is None:
            if self.validation_size is None:
                self.validation_size = DEFAULT_VALIDATION_SIZE
            if not 0 < self.validation_size < 1:
                raise ConfigError("data.validation_size must be between 0 and 1 (the scores "
                                  "before and after training need held-out examples), got "
                                  f"{self.validation_size}")

    def read_splits(self, read: Callable[[str], list]) -> dict[str, list]:
        """The ``train`` and ``validation`` examples that ``read(path)`` gives: from two
        files, or the validation ones held out of ``train``."""
        import torch

        from wxb.data.datasets import DictDataset, train_test_split

        train = read(self.train)
        if self.validation is not None:
            return {"train": train, "validation": read(self.validation)}
        rest, held = train_test_split(DictDataset(i=torch.arange(len(train))),
                                      self.validation_size, self.split_seed)
        return {"train": [train[i] for i in rest.tensors["i"].tolist()],
                "validation": [train[i] for i in held.tensors["i"].tolist()]}


def require(section: Section, key: str, what: str) -> Any:
    """``section.key``, or one line saying it is required and what it holds."""
    value = getattr(section, key)
    if value is None:
        raise ConfigError(f"{section.section_name}.{key} is required: {what}")
    return value


Pairs = list[tuple[str, str]]


@dataclasses.dataclass
class PairTables(Section):
    """Tables of (input, output) text pairs: one table (``path``) split by distinct input into
    train / validation / test shares, so no test input is trained on; or ``train`` with
    ``validation`` and ``test`` tables. ``fieldnames`` names the columns of a headerless
    table; the lengths are in tokens. A subclass names the two columns (``columns``)."""

    path: str | None = None
    train: str | None = None
    validation: str | None = None
    test: str | None = None
    fieldnames: list[str] | None = None
    validation_size: float = 0.05
    test_size: float = 0.1
    split_seed: int = 0
    max_source_length: int = 64
    max_target_length: int = 64

    def columns(self) -> tuple[str, str]:
        """The input's and the output's column names."""
        raise NotImplementedError

    def column_keys(self) -> tuple[str, str]:
        """The keys of this section that name the columns (for error messages)."""
        names = [f.name for f in dataclasses.fields(self) if f.name.endswith("_column")]
        return names[0], names[1]

    def check(self) -> None:
        if self.given("path") == self.given("train"):
            raise self.fail("give either path (one table, split by test_size and "
                            "validation_size) or train (with validation and test files)")
        if self.max_target_length < 2:
            raise ConfigError(f"{self.section_name}.max_target_length must leave room for a "
                              "token and the eos")

    def read(self) -> tuple[dict[str, Pairs], int]:
        """The train / validation / test pairs, and how many rows were skipped as empty."""
        from wxb.data.pairs import sentence_pairs, split_by_source
        from wxb.data.text import read_rows

        def read(path: str):
            return sentence_pairs(read_rows(path, self.fieldnames), path, *self.columns(),
                                  column_keys=self.column_keys())

        if self.path is not None:
            whole = read(self.path)
            return split_by_source(whole.pairs, test_size=self.test_size,
                                   validation_size=self.validation_size,
                                   seed=self.split_seed), whole.skipped_empty
        splits, skipped = {}, 0
        for name in ("train", "validation", "test"):
            if getattr(self, name) is not None:
                part = read(getattr(self, name))
                splits[name], skipped = part.pairs, skipped + part.skipped_empty
        return splits, skipped
