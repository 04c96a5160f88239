"""Token streams for language-model pretraining: a corpus encoded once into a memory-mapped file.

    path = encode_to_file([text], tokenizer, "runs/x/data/tokens.bin")  # + tokens.json
    tokens = read_tokens(path)                       # np.memmap: pages load as they are read
    train, validation = split_tokens(tokens, 0.1)    # the last 10% of the tokens validate
    TokenWindows(train, block_size=128, stride=1)[i] # {"input_ids": (128,), "labels": (128,)}

The file is nanoGPT's ``train.bin``: the ids back to back, ``uint16`` when the vocabulary fits
(half the disk and page cache of 32 bits) else ``uint32``. A JSON sidecar records the dtype,
the count and the tokenizer, so a reader never guesses how to interpret the bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from wxb.errors import DataError
from wxb.io import atomic_save, atomic_write_json, read_json_object
from wxb.tokenizers.base import Tokenizer


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every id below ``vocab_size``."""
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def sidecar_path(path: str | os.PathLike) -> Path:
    """``tokens.bin`` -> ``tokens.json``: where the description of a token file lives."""
    return Path(path).with_suffix(".json")


def write_tokens(ids: Sequence[int] | np.ndarray, path: str | os.PathLike, *, vocab_size: int,
                 tokenizer_info: dict[str, Any] | None = None) -> Path:
    """Write ``ids`` to the token file ``path`` and its JSON sidecar, each atomically.

    The ``.bin`` goes first: a crash in between leaves a sidecar that does not match the file's
    size (or none at all), which ``read_tokens`` refuses instead of reading garbage.
    """
    dtype = token_dtype(vocab_size)
    array = np.asarray(ids, dtype=np.int64)
    if array.ndim != 1:
        raise DataError(f"token ids must form one flat sequence, got shape {array.shape}")
    if len(array) and (array.min() < 0 or array.max() >= vocab_size):
        raise DataError(f"token ids must lie in [0, {vocab_size}), found ids from "
                        f"{array.min()} to {array.max()}")
    path = Path(path)
    atomic_save(path, lambda tmp: array.astype(dtype).tofile(tmp))
    atomic_write_json(sidecar_path(path), {"dtype": dtype.name, "count": len(array),
                                           "vocab_size": vocab_size,
                                           "tokenizer": tokenizer_info or {}})
    return path


def encode_to_file(texts: Iterable[str], tokenizer: Tokenizer,
                   path: str | os.PathLike) -> Path:
    """Encode ``texts`` (whole documents) back to back into the token file ``path``.

    No special tokens are added inside a document; between documents goes the tokenizer's eos
    token when it has one (GPT-2's ``<|endoftext|>``), so the model learns where one ends.
    """
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for i, text in enumerate(texts):
        if i and eos is not None:
            ids.append(eos)
        ids.extend(tokenizer.encode(text, add_special_tokens=False))
    info = {"kind": tokenizer.kind or type(tokenizer).__name__,
            "vocab_size": tokenizer.vocab_size}
    return write_tokens(ids, path, vocab_size=tokenizer.vocab_size, tokenizer_info=info)


def read_tokens(path: str | os.PathLike) -> np.ndarray:
    """Open a token file written by ``write_tokens`` as a read-only memmap of shape (count,)."""
    path, sidecar = Path(path), sidecar_path(path)
    if not path.is_file() or not sidecar.is_file():
        raise DataError(f"token file {path} or its sidecar {sidecar.name} is missing; "
                        "write it with wxb.data.encode_to_file")
    info = read_json_object(sidecar, DataError)
    count = info.get("count")
    if info.get("dtype") not in ("uint16", "uint32") or not isinstance(count, int):
        raise DataError(f"{sidecar} must give dtype (uint16 or uint32) and count (an integer), "
                        f"got {info.get('dtype')!r} and {count!r}")
    dtype = np.dtype(info["dtype"])
    if path.stat().st_size != count * dtype.itemsize:
        raise DataError(f"token file {path} holds {path.stat().st_size} bytes, but {sidecar.name} "
                        f"says {count} {dtype.name} tokens; the file is incomplete, encode "
                        "the corpus again")
    if count == 0:  # np.memmap cannot map an empty file
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(count,))


def split_tokens(tokens: np.ndarray,
                 validation_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Split by position: the first part trains, the last ``validation_fraction`` validates.

    A cut by position (not a shuffle of windows) keeps any validation text from also sitting
    inside an overlapping training window, so the validation loss measures unseen text.
    """
    if not 0 < validation_fraction < 1:
        raise DataError(f"validation_fraction must be between 0 and 1, got "
                        f"{validation_fraction}")
    cut = len(tokens) - round(len(tokens) * validation_fraction)
    return tokens[:cut], tokens[cut:]


class TokenWindows(Dataset):
    """Windows of ``block_size`` consecutive tokens; window ``i`` starts at ``i * stride``.

    ``stride=block_size`` (the default) tiles the tokens without overlap, as an evaluation
    should; ``stride=1`` makes every offset a window, so shuffled batches are nanoGPT's random
    crops drawn without replacement. The mapping from index to window is fixed, so the
    Trainer's seeded shuffling and exact resume apply unchanged. ``labels`` equal ``input_ids``:
    the causal LM shifts them itself.

    Args:
        tokens: (count,) token ids, e.g. a memmap from ``read_tokens``.
        block_size: tokens per window, at most the model's context length.
        stride: distance between the starts of consecutive windows.
        name: what ``tokens`` is, for the error when there are too few of them.
    """

    def __init__(self, tokens: np.ndarray, block_size: int, stride: int | None = None, *,
                 name: str = "corpus") -> None:
        stride = block_size if stride is None else stride
        if block_size < 2 or stride < 1:
            raise DataError(f"block_size must be >= 2 and stride >= 1, got {block_size} and "
                            f"{stride}")
        if len(tokens) < block_size:
            raise DataError(f"the {name} has {len(tokens):,} tokens, fewer than one context "
                            f"window of block_size {block_size}; give a longer text or a "
                            "smaller block_size")
        self.tokens, self.block_size, self.stride = tokens, block_size, stride
        self.num_windows = (len(tokens) - block_size) // stride + 1

    def __len__(self) -> int:
        return self.num_windows

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < self.num_windows:
            raise IndexError(f"window {i} out of range for {self.num_windows} windows")
        start = i * self.stride
        window = torch.from_numpy(self.tokens[start:start + self.block_size].astype(np.int64))
        return {"input_ids": window, "labels": window}
