"""Datasets, readers, token streams and built-in data that needs no download."""

from wxb.data.builtin import load_digits, python_help_text
from wxb.data.datasets import DictDataset, train_test_split
from wxb.data.tabular import read_features
from wxb.data.tokens import (
    TokenWindows,
    encode_to_file,
    read_tokens,
    split_tokens,
    token_dtype,
    write_tokens,
)

__all__ = [
    "DictDataset",
    "TokenWindows",
    "encode_to_file",
    "load_digits",
    "python_help_text",
    "read_features",
    "read_tokens",
    "split_tokens",
    "token_dtype",
    "train_test_split",
    "write_tokens",
]
