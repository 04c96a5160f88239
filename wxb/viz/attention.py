"""Attention heatmaps as PNG: which source tokens each output token looked at."""

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


def plot_attention(weights: np.ndarray, source_tokens: Sequence[str],
                   output_tokens: Sequence[str], path: str | os.PathLike, *,
                   title: str = "Attention") -> Path:
    """Draw ``weights`` (output tokens x source tokens; each row sums to 1) into the PNG
    ``path``, source tokens along the top and output tokens down the side (CJK included)."""
    weights = np.asarray(weights, dtype=float)
    if weights.shape != (len(output_tokens), len(source_tokens)):
        raise DataError(f"attention weights of shape {weights.shape} do not match "
                        f"{len(output_tokens)} output and {len(source_tokens)} source tokens")
    width = min(3 + 0.45 * len(source_tokens), 20)
    height = min(2.5 + 0.4 * len(output_tokens), 20)
    with rc_context({"font.family": list(font_families())}):
        figure = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        image = axes.imshow(weights, cmap="viridis", vmin=0, vmax=max(weights.max(), 1e-9),
                            aspect="auto")
        figure.colorbar(image, ax=axes, label="attention weight")
        axes.set_xticks(range(len(source_tokens)), source_tokens, rotation=90)
        axes.set_yticks(range(len(output_tokens)), output_tokens)
        axes.xaxis.tick_top()
        axes.set_xlabel("source")
        axes.set_ylabel("output")
        axes.set_title(title)
        atomic_save(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    return Path(path)
