"""Evaluation metrics."""

from wxb.metrics.classification import (
    accuracy,
    classification_metrics,
    classification_report,
    confusion_matrix,
    precision_recall_f1,
)
from wxb.metrics.squad import no_answer_baseline, squad_v1, squad_v2
from wxb.metrics.tagging import entities, entity_scores, token_scores_without_o
from wxb.metrics.translation import corpus_bleu

__all__ = ["accuracy", "classification_metrics", "classification_report", "confusion_matrix",
           "corpus_bleu", "entities", "entity_scores", "no_answer_baseline",
           "precision_recall_f1", "squad_v1", "squad_v2", "token_scores_without_o"]
