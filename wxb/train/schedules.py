"""Learning-rate schedules: warm-up, then constant, linear or cosine decay.

Each schedule is a multiplier of the optimizer's base learning rate, written as a closed form in
the current optimizer step. The formulas are those of Hugging Face ``transformers.optimization``,
so a run configured with the same ``lr_scheduler_type`` sees the same learning rate at every step:

- warm-up rises linearly from 0 at step 0 to 1 at step ``num_warmup_steps``;
- ``linear`` then falls linearly to 0 at ``num_training_steps`` and stays there;
- ``cosine`` follows half a cosine wave per cycle (``num_cycles=0.5``: from 1 down to 0 once);
  like Hugging Face, it is not clamped past ``num_training_steps``;
- ``cosine_with_restarts`` jumps back to 1 at the start of each of ``num_cycles`` cycles and is 0
  from ``num_training_steps`` on.

As in Hugging Face, ``num_warmup_steps`` larger than ``num_training_steps`` is allowed: the
warm-up runs to its end, after which ``linear`` is already 0 and the cosines decay within one step.
"""

from __future__ import annotations

import math
from functools import partial

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from wxb.errors import ConfigError

SCHEDULER_NAMES = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts")

# Schedules that decay to 0 need to know where training ends.
_DECAYING = ("linear", "cosine", "cosine_with_restarts")
# The only extra argument any schedule takes, with its default per schedule.
_DEFAULT_NUM_CYCLES = {"cosine": 0.5, "cosine_with_restarts": 1}


def _check_args(
    name: str, num_warmup_steps: int, num_training_steps: int | None, num_cycles: float | None
) -> float | None:
    """Raise ConfigError on bad arguments; return ``num_cycles`` with its default filled in."""
    if name not in SCHEDULER_NAMES:
        raise ConfigError(
            f"unknown lr_scheduler_type {name!r}; choose one of: {', '.join(SCHEDULER_NAMES)}"
        )
    if isinstance(num_warmup_steps, bool) or not isinstance(num_warmup_steps, int):
        raise ConfigError(
            f"num_warmup_steps must be a whole number of steps, got {num_warmup_steps!r}"
        )
    if num_warmup_steps < 0:
        raise ConfigError(f"num_warmup_steps must be 0 or more, got {num_warmup_steps}")
    if num_training_steps is None:
        if name in _DECAYING:
            raise ConfigError(
                f"lr_scheduler_type {name!r} decays to 0 and needs num_training_steps; "
                "give it, or use constant or constant_with_warmup"
            )
    elif isinstance(num_training_steps, bool) or not isinstance(num_training_steps, int):
        raise ConfigError(
            f"num_training_steps must be a whole number of steps, got {num_training_steps!r}"
        )
    elif num_training_steps < 0:
        raise ConfigError(f"num_training_steps must be 0 or more, got {num_training_steps}")
    if name not in _DEFAULT_NUM_CYCLES:
        if num_cycles is not None:
            raise ConfigError(
                f"num_cycles={num_cycles!r} does not apply to lr_scheduler_type {name!r}; "
                f"it is for: {', '.join(_DEFAULT_NUM_CYCLES)}"
            )
        return None
    if num_cycles is None:
        return _DEFAULT_NUM_CYCLES[name]
    if (
        isinstance(num_cycles, bool)
        or not isinstance(num_cycles, (int, float))
        or not num_cycles > 0
        or math.isinf(num_cycles)
    ):
        raise ConfigError(f"num_cycles must be a positive number, got {num_cycles!r}")
    return num_cycles


def _factor(
    step: int,
    *,
    name: str,
    num_warmup_steps: int,
    num_training_steps: int | None,
    num_cycles: float | None,
) -> float:
    """The multiplier at ``step``, for arguments already checked by ``_check_args``."""
    if name == "constant":
        return 1.0
    if step < num_warmup_steps:
        # max(1, ...) keeps step 0 at 0.0 when there is no warm-up at all.
        return step / max(1, num_warmup_steps)
    if name == "constant_with_warmup":
        return 1.0
    # Fraction of the decay phase done; past the end of training it exceeds 1.
    decay_steps = max(1, num_training_steps - num_warmup_steps)
    if name == "linear":
        return max(0.0, (num_training_steps - step) / decay_steps)
    progress = (step - num_warmup_steps) / decay_steps
    if name == "cosine":
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * num_cycles * 2.0 * progress)))
    # cosine_with_restarts: each cycle is a fresh half cosine from 1 to 0.
    if progress >= 1.0:
        return 0.0
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((num_cycles * progress) % 1.0))))


def lr_factor(
    name: str,
    step: int,
    *,
    num_warmup_steps: int,
    num_training_steps: int | None,
    num_cycles: float | None = None,
) -> float:
    """Multiplier of the base learning rate at optimizer ``step`` (0 before the first update).

    ``num_cycles`` defaults to 0.5 for ``cosine`` and 1 for ``cosine_with_restarts`` and is
    refused by the other schedules. ``constant`` ignores ``num_warmup_steps``, as in Hugging Face.
    """
    num_cycles = _check_args(name, num_warmup_steps, num_training_steps, num_cycles)
    return _factor(
        step,
        name=name,
        num_warmup_steps=num_warmup_steps,
        num_training_steps=num_training_steps,
        num_cycles=num_cycles,
    )


def get_scheduler(
    name: str,
    optimizer: Optimizer,
    *,
    num_warmup_steps: int = 0,
    num_training_steps: int | None = None,
    scheduler_specific_kwargs: dict | None = None,
) -> LambdaLR:
    """A ``LambdaLR`` that sets every parameter group's learning rate to ``lr * lr_factor(...)``.

    Call ``scheduler.step()`` after each ``optimizer.step()``. ``scheduler_specific_kwargs`` may
    hold ``num_cycles`` for the cosine schedules. The multiplier is a ``functools.partial`` of a
    module-level function, so ``scheduler.state_dict()`` holds only plain values and loads back
    with ``torch.load(weights_only=True)``.
    """
    extra = dict(scheduler_specific_kwargs or {})
    unknown = sorted(set(extra) - {"num_cycles"})
    if unknown:
        raise ConfigError(
            f"unknown scheduler_specific_kwargs {', '.join(map(repr, unknown))} for "
            f"lr_scheduler_type {name!r}; the only one supported is 'num_cycles' "
            f"(for {', '.join(_DEFAULT_NUM_CYCLES)})"
        )
    num_cycles = _check_args(name, num_warmup_steps, num_training_steps, extra.get("num_cycles"))
    lr_lambda = partial(
        _factor,
        name=name,
        num_warmup_steps=num_warmup_steps,
        num_training_steps=num_training_steps,
        num_cycles=num_cycles,
    )
    return LambdaLR(optimizer, lr_lambda)
