"""Confusion matrices as PNG: counts in each cell, shaded by the share of the true class."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from wxb.errors import DataError
from wxb.io import atomic_save
from wxb.viz.curves import font_families


def plot_confusion_matrix(matrix: np.ndarray, names: Sequence[str], path: str | os.PathLike,
                          *, title: str = "Confusion matrix") -> Path:
    """Draw ``matrix`` (row = true class, column = predicted, as
    ``wxb.metrics.confusion_matrix`` returns it) with class ``names`` into the PNG ``path``.

    Cells are shaded by row share (the recall of each class), so a rare class's mistakes show
    as clearly as a common one's; the numbers are the counts.
    """
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] != len(names):
        raise DataError(f"a confusion matrix must be square with one row per class name; got "
                        f"shape {matrix.shape} for {len(names)} names")
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    n = len(names)
    size = min(4 + 0.45 * n, 16)
    with rc_context({"font.family": list(font_families())}):
        figure = Figure(figsize=(size + 1, size), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        figure.colorbar(image, ax=axes, label="share of the true class")
        axes.set_xticks(range(n), names, rotation=45 if n > 4 else 0, ha="right" if n > 4
                        else "center")
        axes.set_yticks(range(n), names)
        axes.set_xlabel("predicted")
        axes.set_ylabel("true")
        axes.set_title(title)
        if n <= 30:  # beyond that the numbers would not fit in their cells
            for (t, p), count in np.ndenumerate(matrix):
                axes.text(p, t, str(count), ha="center", va="center", fontsize=8,
                          color="white" if shares[t, p] > 0.5 else "black")
        atomic_save(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    return Path(path)
