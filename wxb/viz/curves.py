"""Loss curves: train and eval loss against optimizer step, as a PNG.

Figures are drawn with matplotlib's ``Figure`` and the Agg canvas directly, never through
``pyplot``: no display is needed, no global figure list grows during a long run, and the
process-wide backend is left alone.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

from matplotlib import font_manager, rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from wxb.errors import DataError
from wxb.io import atomic_save

# Fonts with CJK glyphs, most common first (Linux, then macOS and Windows).
_CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "AR PL UMing CN",
    "PingFang SC",
    "Heiti SC",
    "Microsoft YaHei",
    "SimHei",
)


@lru_cache(maxsize=1)
def font_families() -> tuple[str, ...]:
    """Font family list for plots: DejaVu Sans, then every installed CJK font from ``_CJK_FONTS``.

    matplotlib falls back glyph by glyph along this list, so Latin text keeps its usual look and
    Chinese or Japanese labels (tokens, class names) render instead of as empty boxes. With no
    CJK font installed the list is just DejaVu Sans, and such labels draw as boxes with a warning.
    """
    installed = {font.name for font in font_manager.fontManager.ttflist}
    # A CJK font with only one weight makes matplotlib log "Failed to find font weight normal"
    # for every label it draws; it then uses that weight, which is what we want.
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    return ("DejaVu Sans", *(name for name in _CJK_FONTS if name in installed))


def _points(log_history: list[dict], key: str) -> list[tuple[float, float]]:
    """``(step, value)`` of every log entry that has both ``"step"`` and ``key``."""
    return [
        (entry["step"], entry[key]) for entry in log_history if key in entry and "step" in entry
    ]


def plot_loss_curves(
    log_history: list[dict],
    path: str | os.PathLike,
    *,
    title: str = "Loss curves",
) -> Path:
    """Draw train and eval loss against step into the PNG file ``path`` and return its path.

    ``log_history`` is the Trainer's (and Hugging Face's ``trainer.state.log_history``) list of
    log entries: those with ``"loss"`` and ``"step"`` form the train curve, those with
    ``"eval_loss"`` and ``"step"`` the eval curve. Either curve may be missing or a single point.
    The file is written atomically, so an interrupted run never leaves a broken PNG.
    """
    curves = {"train": _points(log_history, "loss"), "eval": _points(log_history, "eval_loss")}
    if not any(curves.values()):
        raise DataError(
            f"cannot plot loss curves for {os.fspath(path)!r}: log_history has no entry with "
            "'step' and 'loss' or 'eval_loss'; log at least one step first"
        )

    with rc_context({"font.family": list(font_families())}):
        figure = Figure(figsize=(7, 4.5), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        for label, points in curves.items():
            if not points:
                continue
            steps, losses = zip(*points, strict=True)
            # Eval points are sparse, and a lone train point has no line: mark them.
            marker = "o" if label == "eval" or len(points) == 1 else None
            axes.plot(steps, losses, marker=marker, markersize=4, label=f"{label} loss")
        axes.set_title(title)
        axes.set_xlabel("step")
        axes.set_ylabel("loss")
        axes.grid(True, alpha=0.3)
        axes.legend()
        # The temporary file ends in .tmp, so the format cannot come from the name.
        atomic_save(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    return Path(path)
