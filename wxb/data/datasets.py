"""A map-style dataset of named tensors, and a seeded split."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from wxb.errors import DataError


class DictDataset(Dataset):
    """Example ``i`` is ``{name: tensor[i] for each named tensor}``; all share the first dim."""

    def __init__(self, **tensors: torch.Tensor) -> None:
        lengths = {name: len(t) for name, t in tensors.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(f"the tensors of a dataset must have equal lengths, got {lengths}")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values()))) if self.tensors else 0

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {name: t[i] for name, t in self.tensors.items()}

    def rename(self, old: str, new: str) -> DictDataset:
        tensors = dict(self.tensors)
        tensors[new] = tensors.pop(old)
        return DictDataset(**tensors)


def train_test_split(dataset: DictDataset, test_size: float = 0.2,
                     seed: int = 0) -> tuple[DictDataset, DictDataset]:
    """Shuffle with ``seed`` and hold out ``test_size`` of the examples (a fixed split)."""
    if not 0 < test_size < 1:
        raise DataError(f"test_size must be between 0 and 1, got {test_size}")
    n = len(dataset)
    n_test = round(n * test_size)
    if n_test < 1 or n_test >= n:
        raise DataError(f"cannot hold out {test_size:.0%} of {n} examples; "
                        "the dataset needs more examples")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    test, train = order[:n_test], order[n_test:]
    return (DictDataset(**{k: t[train] for k, t in dataset.tensors.items()}),
            DictDataset(**{k: t[test] for k, t in dataset.tensors.items()}))
