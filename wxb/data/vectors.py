"""Pretrained word vectors in the text formats of word2vec and GloVe.

    word2vec:  a first line "<count> <dimensions>", then "word v1 v2 ... vd" per line
    GloVe:     no first line, "word v1 v2 ... vd" per line

Only the words a vocabulary asks for are kept (a GloVe file has 400,000 of them), so reading
costs the file's size in time, not in memory. Load them into a model with
``model.load_vectors(vectors, tokenizer.get_vocab())``.
"""

from __future__ import annotations

from collections.abc import Container
from pathlib import Path

import torch

from wxb.errors import DataError


def read_word_vectors(path: str | Path,
                      words: Container[str] | None = None) -> dict[str, torch.Tensor]:
    """``{word: vector}`` from a word2vec or GloVe text file, for ``words`` only if given."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"word-vector file {path} does not exist")
    vectors: dict[str, torch.Tensor] = {}
    dimensions = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            fields = line.rstrip("\n").rstrip().split(" ")
            if number == 1 and len(fields) == 2 and all(v.isdigit() for v in fields):
                dimensions = int(fields[1])  # word2vec's header: count and dimensions
                continue
            if len(fields) < 2:
                continue
            dimensions = dimensions or len(fields) - 1
            if len(fields) - 1 != dimensions:
                raise DataError(f"{path}, line {number}: {len(fields) - 1} numbers after the "
                                f"word, expected {dimensions}")
            word = fields[0]
            if words is not None and word not in words:
                continue
            try:
                vectors[word] = torch.tensor([float(v) for v in fields[1:]])
            except ValueError:
                raise DataError(f"{path}, line {number}: the values after {word!r} must be "
                                "numbers") from None
    return vectors
