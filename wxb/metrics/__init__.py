"""Evaluation metrics."""

from wxb.metrics.classification import (
    accuracy,
    classification_metrics,
    classification_report,
    confusion_matrix,
    precision_recall_f1,
)
from wxb.metrics.tagging import entities, entity_scores, token_scores_without_o
from wxb.metrics.translation import corpus_bleu

__all__ = ["accuracy", "classification_metrics", "classification_report", "confusion_matrix",
           "corpus_bleu", "entities", "entity_scores", "precision_recall_f1",
           "token_scores_without_o"]
