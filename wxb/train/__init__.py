"""The general-purpose Trainer every wxb model trains with."""

from wxb.train.arguments import TrainingArguments
from wxb.train.checkpoint import find_checkpoint
from wxb.train.seed import enable_full_determinism, set_seed
from wxb.train.trainer import (
    EvalPrediction,
    Trainer,
    TrainerState,
    TrainingInterrupted,
    TrainOutput,
    create_optimizer,
    default_collate,
)

__all__ = [
    "EvalPrediction",
    "TrainOutput",
    "Trainer",
    "TrainerState",
    "TrainingArguments",
    "TrainingInterrupted",
    "create_optimizer",
    "default_collate",
    "enable_full_determinism",
    "find_checkpoint",
    "set_seed",
]
