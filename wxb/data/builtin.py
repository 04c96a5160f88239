"""Built-in data that needs no download."""

from __future__ import annotations

import torch

from wxb.data.datasets import DictDataset


def load_digits() -> DictDataset:
    """scikit-learn's bundled 8x8 handwritten digits: 1,797 images, labels 0-9.

    ``inputs``: (1797, 1, 8, 8) float32 scaled to [0, 1] (the raw pixels are 0..16);
    ``labels``: (1797,) int64.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return DictDataset(inputs=images, labels=torch.tensor(digits.target, dtype=torch.int64))


def python_help_text() -> str:
    """Python's own help pages (``pydoc_data.topics``, shipped with CPython): about 465,000
    characters of English prose and code, sorted by topic so the text is always the same."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in sorted(topics))
