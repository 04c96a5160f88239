"""TrainingArguments: every knob of the Trainer, named as in Hugging Face ``transformers``."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from wxb.config import check_known_keys, coerce_fields
from wxb.errors import ConfigError
from wxb.train.schedules import SCHEDULER_NAMES

OPTIMIZERS = ("adamw", "adam", "sgd")
EVAL_STRATEGIES = ("no", "steps", "epoch")
BF16_CHOICES = "true, false or auto"


@dataclass
class TrainingArguments:
    """What to train for, how to step, when to evaluate and save.

    The names and meanings follow ``transformers.TrainingArguments`` so a user of Hugging Face
    can read a wxb config without a glossary. Values given as strings (from YAML or the command
    line) are converted to the field's type; a value that cannot be raises ``ConfigError``.
    """

    output_dir: str = "runs/train"
    num_train_epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides num_train_epochs
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1

    optim: str = "adamw"
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    momentum: float = 0.0  # sgd only
    max_grad_norm: float = 1.0  # <= 0 disables clipping

    lr_scheduler_type: str = "linear"
    warmup_steps: int = 0
    warmup_ratio: float = 0.0  # used when warmup_steps is 0
    lr_scheduler_kwargs: dict = field(default_factory=dict)

    # autocast to bfloat16 (CPU or CUDA); "auto": only where bf16 is native, since emulated
    # bf16 is slower than fp32 (wxb.train.precision); the Trainer resolves it
    bf16: bool | str = False
    fp16: bool = False  # autocast to float16 with a GradScaler (CUDA only)
    use_cpu: bool = False
    seed: int = 42
    data_seed: int | None = None  # seed of the shuffling order; defaults to `seed`
    group_by_length: bool = False  # batches of examples of similar length: less padding
    full_determinism: bool = False
    torch_compile: bool = False  # train through torch.compile(model); evaluation stays eager
    gradient_checkpointing: bool = False  # recompute each layer in backward: less memory
    neftune_noise_alpha: float | None = None  # NEFTune: noisy input embeddings in training

    eval_strategy: str = "no"
    eval_steps: int = 0
    save_steps: int = 0  # 0: save at each evaluation and at the end
    logging_steps: int = 10
    metric_for_best_model: str = "loss"
    greater_is_better: bool | None = None  # default: False for losses, True otherwise
    early_stopping_patience: int = 0  # evaluations without improvement; 0 disables
    early_stopping_threshold: float = 0.0

    dataloader_num_workers: int = 0
    dataloader_drop_last: bool = False
    disable_tqdm: bool | None = None  # None: quiet when not a TTY or when CI=true
    plot_loss: bool = True

    def __post_init__(self) -> None:
        self.bf16 = _bf16_choice(self.bf16)  # first: its message names the three choices
        coerce_fields(self)
        self._check()

    def _check(self) -> None:
        _choose("optim", self.optim, OPTIMIZERS)
        _choose("lr_scheduler_type", self.lr_scheduler_type, SCHEDULER_NAMES)
        _choose("eval_strategy", self.eval_strategy, EVAL_STRATEGIES)
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size",
                     "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate < 0:
            raise ConfigError(f"learning_rate must be >= 0, got {self.learning_rate}")
        if self.warmup_steps < 0 or not 0 <= self.warmup_ratio <= 1:
            raise ConfigError("warmup_steps must be >= 0 and warmup_ratio within [0, 1]")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ConfigError("set num_train_epochs > 0 or max_steps > 0 to train at all")
        if self.eval_strategy == "steps" and self.eval_steps < 1:
            raise ConfigError("eval_strategy 'steps' needs eval_steps >= 1, e.g. eval_steps: 100")
        if self.neftune_noise_alpha is not None and self.neftune_noise_alpha <= 0:
            raise ConfigError("neftune_noise_alpha must be > 0 (the paper uses 5), got "
                              f"{self.neftune_noise_alpha}; leave it out to train without noise")
        if self.fp16 and self.bf16 is True:
            raise ConfigError("choose one of fp16 and bf16, not both")
        if self.early_stopping_patience and self.eval_strategy == "no":
            raise ConfigError("early_stopping_patience needs evaluation: set eval_strategy "
                              "to 'steps' or 'epoch'")

    @property
    def eval_metric_key(self) -> str:
        name = self.metric_for_best_model
        return name if name.startswith("eval_") else f"eval_{name}"

    @property
    def higher_is_better(self) -> bool:
        if self.greater_is_better is not None:
            return self.greater_is_better
        return not self.metric_for_best_model.removeprefix("eval_").endswith("loss")

    def warmup_for(self, num_training_steps: int) -> int:
        # Hugging Face rounds the warm-up of a ratio up.
        return self.warmup_steps or math.ceil(self.warmup_ratio * num_training_steps)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingArguments:
        check_known_keys(cls, values, "training argument")
        return cls(**values)


def _bf16_choice(value: bool | str) -> bool | str:
    """True, False or "auto", from a bool or its YAML / command-line spelling."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word == "auto":
            return "auto"
        if word in ("true", "yes", "1", "false", "no", "0"):
            return word in ("true", "yes", "1")
    raise ConfigError(f"bf16 must be {BF16_CHOICES}, got {value!r}")


def _choose(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")
