"""Datasets, readers and built-in data that needs no download."""

from wxb.data.builtin import load_digits
from wxb.data.datasets import DictDataset, train_test_split
from wxb.data.tabular import read_features

__all__ = ["DictDataset", "load_digits", "read_features", "train_test_split"]
