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
