"""Plots written to PNG files (no display needed)."""

from wxb.viz.attention import plot_attention
from wxb.viz.confusion import plot_confusion_matrix
from wxb.viz.curves import font_families, plot_loss_curves
from wxb.viz.embeddings import embedding_coordinates, plot_embeddings

__all__ = ["embedding_coordinates", "font_families", "plot_attention", "plot_confusion_matrix",
           "plot_embeddings", "plot_loss_curves"]
