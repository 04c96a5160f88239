"""Callbacks for the Trainer: a wall-clock budget, NEFTune's noisy embeddings, staged unfreezing.

A callback is any object with some of the Trainer's event methods, each called with the trainer
(``wxb.train.trainer.Trainer``'s docstring lists them). The ones here know nothing of any model
family or fine-tuning method: what to unfreeze and when is decided by the caller
(``wxb.peft.freeze.GradualUnfreezing`` builds a ``StagedUnfreezing`` for a Transformer).

NEFTune (Jain et al. 2023) is a training-time regulariser: in training only, every input
embedding vector gets uniform noise, scaled so that its size does not grow with the sequence
length L or the width d:

    e' = e + ε,    ε ~ Uniform(-α/√(L·d), α/√(L·d))        α = neftune_noise_alpha (5 in the paper)

It is a forward hook on ``model.get_input_embeddings()`` (as in Hugging Face's Trainer, which
names the knob ``neftune_noise_alpha``): evaluation and generation (``model.eval()``) see clean
embeddings, and the hook is removed when training ends, however it ends.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING

import torch
from torch import nn

from wxb.errors import ConfigError

if TYPE_CHECKING:
    from wxb.train.trainer import Trainer


class TimeBudget:
    """Stop training once ``seconds`` of wall time have passed.

    The clock starts when training does (``on_train_begin``: what ran before, such as an
    evaluation of the starting point, is not counted). The step in flight finishes, and the
    Trainer saves its last checkpoint as on any stop; ``stopped`` says afterwards whether the
    budget ended the run (for result.json).
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()
        self.stopped = False

    def on_train_begin(self, trainer: Trainer) -> None:
        self.start = time.perf_counter()

    def on_step_end(self, trainer: Trainer) -> None:
        if time.perf_counter() - self.start >= self.seconds:
            self.stopped = True
            trainer.stop()


# ----------------------------------------------------------------------------- NEFTune


def input_embeddings(model: nn.Module) -> nn.Embedding:
    """The layer that turns token ids into vectors: ``model.get_input_embeddings()``."""
    model = getattr(model, "module", model)  # inside DistributedDataParallel
    getter = getattr(model, "get_input_embeddings", None)
    embedding = getter() if getter is not None else None
    if not isinstance(embedding, nn.Embedding):
        raise ConfigError(f"NEFTune adds noise to input embeddings; {type(model).__name__} "
                          "has no token embedding layer")
    return embedding


def add_noise(module: nn.Module, inputs: tuple, output: torch.Tensor,
              alpha: float) -> torch.Tensor:
    """(batch, L, d) embeddings -> the same plus NEFTune's noise, in training only."""
    if not module.training:
        return output
    bound = alpha / math.sqrt(output.shape[-2] * output.shape[-1])
    return output + torch.empty_like(output).uniform_(-bound, bound)


def _check_alpha(alpha: float) -> None:
    if alpha <= 0:
        raise ConfigError(f"neftune_noise_alpha must be > 0 (the paper uses 5), got {alpha}")


@contextmanager
def neftune(model: nn.Module, alpha: float) -> Iterator[nn.Module]:
    """Within the block, ``model``'s input embeddings are noisy while it is in training mode."""
    _check_alpha(alpha)
    handle = input_embeddings(model).register_forward_hook(partial(add_noise, alpha=alpha))
    try:
        yield model
    finally:
        handle.remove()


class NEFTune:
    """NEFTune's noise on ``trainer.model``'s input embeddings from the start of training to
    its end. The Trainer adds one itself when ``neftune_noise_alpha`` is set."""

    def __init__(self, alpha: float) -> None:
        _check_alpha(alpha)
        self.alpha = alpha
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        embedding = input_embeddings(trainer.model)
        self._handle = embedding.register_forward_hook(partial(add_noise, alpha=self.alpha))

    def on_train_end(self, trainer: Trainer) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


# ----------------------------------------------------------------------------- unfreezing


class StagedUnfreezing:
    """Unfreeze ``stages`` of parameters one after another: after ``every`` optimizer steps
    the first stage starts training, after ``2 * every`` the second too, and so on.

    The caller freezes what should wait and orders the stages (ULMFiT's gradual unfreezing:
    the top layer first, the embeddings last). The optimizer must hold every staged parameter
    from the start, frozen ones included (a frozen parameter gets no gradient, so no update);
    that is checked when training begins. The stages opened by the current step are applied
    then too, so a resumed run continues with the same parameters trainable.
    """

    def __init__(self, stages: Sequence[Iterable[nn.Parameter]], every: int) -> None:
        if every < 1:
            raise ConfigError(f"{type(self).__name__} every must be at least 1 step, "
                              f"got {every}")
        self.stages = [list(stage) for stage in stages]
        self.every = every

    def unfrozen_stages(self, step: int) -> int:
        """How many stages train after ``step`` optimizer steps."""
        return min(step // self.every, len(self.stages))

    def on_train_begin(self, trainer: Trainer) -> None:
        held = {id(p) for opt in trainer.optimizers.values()
                for g in opt.param_groups for p in g["params"]}
        if any(id(p) not in held for stage in self.stages for p in stage):
            raise ConfigError(f"{type(self).__name__} needs an optimizer over every parameter "
                              "it will unfreeze, frozen ones included; pass e.g. "
                              "optimizers=torch.optim.AdamW(model.parameters()) to the Trainer")
        self._apply(trainer.state.global_step)

    def on_step_end(self, trainer: Trainer) -> None:
        self._apply(trainer.state.global_step)

    def _apply(self, step: int) -> None:
        for stage in self.stages[:self.unfrozen_stages(step)]:
            for p in stage:
                p.requires_grad_(True)
