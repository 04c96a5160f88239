"""Classification metrics."""

from __future__ import annotations

import numpy as np


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of ``predictions`` (class ids) equal to ``labels``."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    return float((predictions == labels).mean())


def classification_metrics(eval_pred) -> dict[str, float]:
    """``compute_metrics`` for the Trainer: accuracy of the arg-max over the logits."""
    return {"accuracy": accuracy(eval_pred.predictions.argmax(-1), eval_pred.label_ids)}
