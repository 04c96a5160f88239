"""Seeding and deterministic mode."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (every device) with one number."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def enable_full_determinism(seed: int) -> None:
    """Seed everything and make torch refuse nondeterministic kernels.

    Slower, but two runs with the same seed give bitwise-equal results on the same hardware.
    """
    set_seed(seed)
    # cuBLAS needs a fixed workspace to be deterministic (see the CUDA docs on reproducibility).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
