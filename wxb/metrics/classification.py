"""Classification metrics: accuracy, the confusion matrix, precision / recall / F1.

The confusion matrix follows scikit-learn: row = true class, column = predicted class.
"""

from __future__ import annotations

import numpy as np


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of ``predictions`` (class ids) equal to ``labels``."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    return float((predictions == labels).mean())


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray,
                     num_labels: int | None = None) -> np.ndarray:
    """(num_labels, num_labels) counts: entry [t, p] is how many of class t were predicted p."""
    predictions, labels = np.asarray(predictions, dtype=int), np.asarray(labels, dtype=int)
    n = num_labels or int(max(predictions.max(initial=-1), labels.max(initial=-1))) + 1
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def precision_recall_f1(predictions: np.ndarray, labels: np.ndarray,
                        num_labels: int | None = None) -> dict[str, float]:
    """Macro-averaged precision, recall and F1 (each class counts the same; a class never
    predicted, or never present, scores 0 there, as scikit-learn's ``zero_division=0``)."""
    matrix = confusion_matrix(predictions, labels, num_labels).astype(float)
    hits = np.diag(matrix)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
    return {"precision": float(precision.mean()), "recall": float(recall.mean()),
            "f1": float(f1.mean())}


def classification_metrics(eval_pred) -> dict[str, float]:
    """``compute_metrics`` for the Trainer: accuracy of the arg-max over the logits."""
    return {"accuracy": accuracy(eval_pred.predictions.argmax(-1), eval_pred.label_ids)}


def classification_report(eval_pred) -> dict[str, float]:
    """``compute_metrics`` with macro precision, recall and F1 beside the accuracy."""
    predictions = eval_pred.predictions.argmax(-1)
    num_labels = eval_pred.predictions.shape[-1]
    return {"accuracy": accuracy(predictions, eval_pred.label_ids),
            **precision_recall_f1(predictions, eval_pred.label_ids, num_labels)}
