"""Embedding maps: vectors projected to 2-D (PCA, t-SNE or UMAP), each point labelled, as a PNG.

``embedding_coordinates`` is the projection alone, so a caller (or a test) can read the very
(n, 2) positions that ``plot_embeddings`` draws.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from wxb.errors import ConfigError, DataError
from wxb.io import atomic_save
from wxb.viz.curves import font_families

Method = Literal["pca", "tsne", "umap", "none"]
_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}


def embedding_coordinates(vectors: np.ndarray, method: Method = "pca", *,
                          seed: int = 0) -> np.ndarray:
    """(n, 2) positions of ``vectors`` (n, d): scikit-learn's ``PCA(2)`` or ``TSNE(2)``, or
    ``umap.UMAP(2)`` when the ``umap-learn`` package is installed; ``seed`` fixes t-SNE and UMAP.
    ``"none"`` draws 2-D vectors as they are (a learned 2-D embedding, unrotated).

    t-SNE's perplexity is scikit-learn's 30 where there are enough points, else (n − 1) / 3
    (it must stay below n).
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] < 2 or vectors.shape[1] < 2:
        raise DataError(f"an embedding map needs a (points, dim) matrix with at least 2 points "
                        f"and 2 dimensions; got shape {vectors.shape}")
    if method == "none":
        if vectors.shape[1] != 2:
            raise ConfigError(f"method 'none' draws 2-D vectors as they are; these have "
                              f"{vectors.shape[1]} dimensions (use pca, tsne or umap)")
        return vectors
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2).fit_transform(vectors)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, max(1.0, (len(vectors) - 1) / 3))
        return TSNE(n_components=2, perplexity=perplexity, init="pca",
                    random_state=seed).fit_transform(vectors)
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise ConfigError("method 'umap' needs the umap-learn package: pip install "
                              "umap-learn (or use method 'pca' or 'tsne')") from None
        return umap.UMAP(n_components=2, random_state=seed).fit_transform(vectors)
    raise ConfigError(f"unknown projection method {method!r}; use pca, tsne, umap or none")


def plot_embeddings(vectors: np.ndarray, labels: Sequence[str], path: str | os.PathLike, *,
                    method: Method = "pca", groups: Sequence[str] | None = None,
                    title: str | None = None, seed: int = 0) -> Path:
    """Project ``vectors`` (n, d) to 2-D with ``method`` and draw each point with its label
    (Chinese and Japanese words render with the installed CJK fonts) into the PNG ``path``,
    written atomically; returns the path.

    ``groups`` (one name per point) colours the points by group, with a legend. The positions
    drawn are ``embedding_coordinates(vectors, method, seed=seed)``.
    """
    labels = [str(label) for label in labels]
    if len(labels) != len(vectors):
        raise DataError(f"plot_embeddings needs one label per vector; got {len(labels)} labels "
                        f"for {len(vectors)} vectors")
    if groups is not None and len(groups) != len(vectors):
        raise DataError(f"plot_embeddings needs one group per vector; got {len(groups)} groups "
                        f"for {len(vectors)} vectors")
    xy = embedding_coordinates(vectors, method, seed=seed)
    with rc_context({"font.family": list(font_families())}):
        figure = Figure(figsize=(8, 7), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        if groups is None:
            axes.scatter(xy[:, 0], xy[:, 1], s=14)
        else:
            names = list(dict.fromkeys(groups))  # first-seen order, for a stable legend
            for name in names:
                mask = np.array([g == name for g in groups])
                axes.scatter(xy[mask, 0], xy[mask, 1], s=14, label=str(name))
            axes.legend(fontsize=8)
        # Past a few hundred points labels only cover each other; the points still show.
        if len(labels) <= 300:
            for (x, y), label in zip(xy, labels, strict=True):
                axes.annotate(label, (x, y), xytext=(3, 2), textcoords="offset points",
                              fontsize=8)
        axes.set_title(title or f"{len(labels)} embeddings ({_NAMES[method]})")
        axes.set_xticks([])
        axes.set_yticks([])
        atomic_save(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    return Path(path)
