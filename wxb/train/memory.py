"""How much memory this process holds (resident set size), now and at its peak, in MiB.

Fine-tuning pipelines report the memory of training as the bytes of the model's weights (4-bit
ones as stored) plus what the process's resident set grew by while training: gradients, the
optimizer's state, activations and their transients. The interpreter, the libraries and the
encoded data, which every method needs alike, are left out.

    meter = TrainingMemory()
    meter.start(model)           # just before training: the model is built, the data encoded
    trainer.train()
    meter.report()               # {"model", "added_by_training", "training", "peak"}

Two things would make the resident set measure the allocator rather than training. The peak
of loading a checkpoint (a state dict and the model side by side) is forgotten at ``start``:
Linux resets the high-water mark when "5" is written to ``/proc/self/clear_refs``. And glibc's
malloc keeps freed blocks for reuse, raising its threshold for returning large ones after each
free, so a process's resident set stays near the largest it has been: ``ALLOCATOR_ENV`` sets a
fixed threshold (128 KiB), which returns every freed tensor of that size; set it before a
process starts (``wxb.tasks.compare_finetune`` runs each variant so).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
import resource
import sys

from torch import nn

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


def rss_mib() -> float:
    """The resident set size now."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE / 2**20
    except OSError:  # no /proc (macOS): the peak is the best there is
        return peak_rss_mib()


def peak_rss_mib() -> float:
    """The highest resident set size since the process started or ``reset_peak``: VmHWM
    where /proc has it, else ``ru_maxrss`` (KiB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def release_free_memory() -> None:
    """Return the C allocator's free pages to the system (glibc's ``malloc_trim``; elsewhere
    nothing to do)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def reset_peak() -> bool:
    """Make the peak the present resident set size (Linux); False where that is impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class TrainingMemory:
    """The memory training takes (the ``memory_mib`` of a fine-tuning result.json): ``start``
    just before training, ``report`` just after."""

    def start(self, model: nn.Module) -> None:
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                    for t in (*model.parameters(), *model.buffers())}
        self.model_mib = sum(storages.values()) / 2**20
        # What earlier work freed must not serve training's allocations from pages already
        # resident (they would not show as growth): collect its garbage and hand the C
        # library's free pages back to the system first.
        gc.collect()
        release_free_memory()
        reset_peak()
        self.before_training = rss_mib()

    def report(self) -> dict[str, float]:
        peak = peak_rss_mib()
        added = peak - self.before_training
        return {"model": round(self.model_mib, 1), "added_by_training": round(added, 1),
                "training": round(self.model_mib + added, 1), "peak": round(peak, 1)}
