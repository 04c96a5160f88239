"""Timing shared by the benchmark scripts (run as `python benchmarks/NAME.py`, which puts this
folder on the import path)."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_time(fn: Callable[[], object], rounds: int, repeats: int) -> float:
    """Seconds per call of ``fn``: the best over ``rounds`` of the mean of ``repeats`` calls,
    after one warm-up call (allocations, kernel choice)."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best
