"""Evaluation metrics."""

from wxb.metrics.classification import accuracy, classification_metrics

__all__ = ["accuracy", "classification_metrics"]
