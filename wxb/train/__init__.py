"""The general-purpose Trainer every wxb model trains with."""

from wxb.train.arguments import TrainingArguments
from wxb.train.callbacks import NEFTune, StagedUnfreezing, TimeBudget
from wxb.train.checkpoint import find_checkpoint
from wxb.train.precision import Precision, native_bf16, resolve_precision
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
    "NEFTune",
    "Precision",
    "StagedUnfreezing",
    "TimeBudget",
    "TrainOutput",
    "Trainer",
    "TrainerState",
    "TrainingArguments",
    "TrainingInterrupted",
    "create_optimizer",
    "default_collate",
    "enable_full_determinism",
    "find_checkpoint",
    "native_bf16",
    "resolve_precision",
    "set_seed",
]
