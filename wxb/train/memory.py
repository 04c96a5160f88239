"""How much memory this process holds (resident set size), now and at its peak, in MiB.

Fine-tuning recipes report the peak of training as ``peak - before the model was built``: the
model, its gradients, the optimizer's state and the activations, without the interpreter, the
libraries and the data, which every method needs alike.
"""

from __future__ import annotations

import os
import resource
import sys

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_mib() -> float:
    """The resident set size now."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE / 2**20
    except OSError:  # no /proc (macOS): the peak is the best there is
        return peak_rss_mib()


def peak_rss_mib() -> float:
    """The highest resident set size the process has had (``ru_maxrss``: KiB on Linux, bytes
    on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def memory_report(before_model: float) -> dict[str, float]:
    """``memory_mib`` of a fine-tuning result.json: the RSS before the model was built
    (``rss_mib()`` then), the peak so far, and their difference, the memory training took."""
    peak = peak_rss_mib()
    return {"before_model": round(before_model, 1), "peak": round(peak, 1),
            "training": round(peak - before_model, 1)}
