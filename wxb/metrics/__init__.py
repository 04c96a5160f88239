"""Evaluation metrics."""

from wxb.metrics.classification import (
    accuracy,
    classification_metrics,
    classification_report,
    confusion_matrix,
    precision_recall_f1,
)

__all__ = ["accuracy", "classification_metrics", "classification_report", "confusion_matrix",
           "precision_recall_f1"]
