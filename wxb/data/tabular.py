"""Feature tables for classifiers: CSV (numeric columns + a label column) or NumPy .npz."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from wxb.data.datasets import DictDataset
from wxb.errors import DataError


def read_features(path: str | Path, label_column: str = "label") -> DictDataset:
    """Read ``inputs`` (float32) and ``labels`` (int64) from a .csv or .npz file.

    A CSV has a header row; every column but ``label_column`` is a numeric feature. An .npz
    holds arrays ``X`` (examples first, any shape) and ``y``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist; give a .csv or .npz file, "
                        "or use the built-in data: digits")
    if path.suffix == ".npz":
        inputs, labels = _read_npz(path)
    elif path.suffix == ".csv":
        inputs, labels = _read_csv(path, label_column)
    else:
        raise DataError(f"data file {path} has suffix {path.suffix!r}; use .csv or .npz")
    if len(labels) == 0:
        raise DataError(f"data file {path} holds no examples")
    return DictDataset(inputs=torch.from_numpy(inputs.astype(np.float32)),
                       labels=torch.from_numpy(labels.astype(np.int64)))


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as arrays:
        missing = {"X", "y"} - set(arrays.files)
        if missing:
            raise DataError(f"{path} lacks the array(s) {sorted(missing)}; an .npz needs X "
                            "(features) and y (integer labels)")
        inputs, labels = arrays["X"], arrays["y"]
    if len(inputs) != len(labels):
        raise DataError(f"{path}: X has {len(inputs)} rows but y has {len(labels)}")
    return inputs, labels


def _read_csv(path: Path, label_column: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DataError(f"data file {path} is empty; it needs a header row and examples")
    header, body = rows[0], [r for r in rows[1:] if r]
    if label_column not in header:
        raise DataError(f"{path} has no column {label_column!r}; its columns are: "
                        f"{', '.join(header)}")
    at = header.index(label_column)
    features, labels = [], []
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DataError(f"{path}, line {line}: {len(row)} fields, the header has "
                            f"{len(header)}")
        try:
            labels.append(int(row[at]))
            features.append([float(v) for i, v in enumerate(row) if i != at])
        except ValueError:
            raise DataError(f"{path}, line {line}: every value must be a number and the "
                            f"label an integer, got {row}") from None
    width = len(header) - 1  # an empty body still has one column per feature
    return np.array(features, dtype=np.float32).reshape(len(body), width), np.array(labels)
