"""The skeleton every training task runs on: sections in, result.json out.

    run = Run("text-classify", config, {"model": ModelSection, "data": DataSection}, log=log)
    run.expect(METRICS)                       # the goal names a metric this run reports
    args = run.arguments(TRAINING_DEFAULTS)   # the training section: TrainingArguments
    trainer = run.trainer(model, args, ...)   # with the run's time budget
    output = trainer.train(resume_from_checkpoint=resume)
    ...
    return run.finish(metrics, trainer=trainer, output=output, model_dir=..., plots=...)

``Run`` checks the config's top-level keys and every section once, starts the clock, holds the
one time budget (``max_time_seconds``) and the one goal (``expected``), and ``finish`` writes
``result.json`` once, atomically, with the fields every task shares (``COMMON_FIELDS``) before
the task's own.
"""

from __future__ import annotations

import copy
import os
import platform
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from wxb.config import coerce
from wxb.errors import ConfigError
from wxb.io import atomic_write_json
from wxb.tasks.sections import Section

# Top-level keys of a config that are not sections: a recipe's name and promise, the budget.
COMMON_KEYS = ("name", "description", "task", "expected", "reported", "max_time_seconds")
# What every result.json opens with, in this order.
COMMON_FIELDS = ("task", "recipe", "metric", "value", "expected", "met", "metrics", "steps",
                 "epoch", "wall_time_s", "train_runtime_s", "stopped_by_time_budget",
                 "num_parameters", "trainable_parameters", "precision", "machine",
                 "model_dir", "loss_curve", "plots")
BOUNDS = ("at_least", "at_most")

Log = Callable[[str], None]


class Run:
    """One run of a task on one config (see the module docstring).

    ``sections`` maps each section name to its ``Section`` class; ``extra_keys`` are other
    top-level keys the task reads itself (``variants`` of a comparison).
    """

    def __init__(self, task: str, config: dict[str, Any], sections: dict[str, type[Section]],
                 *, log: Log | None = None, extra_keys: tuple[str, ...] = ()) -> None:
        self.start = time.perf_counter()
        self.task = task
        self.log: Log = log or (lambda line: None)
        if not isinstance(config, dict):
            raise ConfigError(f"a {task} config must be a mapping with sections "
                              f"{', '.join(sections)}")
        self.config = copy.deepcopy(config)
        # Every task trains with TrainingArguments: its ``training`` section (``arguments``).
        names = (*sections, "training")
        unknown = sorted(set(self.config) - set(names) - set(COMMON_KEYS) - set(extra_keys))
        if unknown:
            raise ConfigError(f"unknown config section {unknown[0]!r}; a {task} config has the "
                              f"sections {', '.join(names)} (recipes add "
                              f"{', '.join((*COMMON_KEYS, *extra_keys))})")
        self.sections = {name: cls.from_dict(self.config.get(name), name)
                         for name, cls in sections.items()}
        seconds = self.config.get("max_time_seconds")
        self.max_time = None if seconds is None else coerce("max_time_seconds", seconds, float)
        self.goals: list[dict[str, Any]] = []
        self.args: Any = None
        self.budget: Any = None

    def __getitem__(self, name: str) -> Any:
        return self.sections[name]

    # ------------------------------------------------------------------------- before training

    def expect(self, metrics: Iterable[str]) -> None:
        """Check the config's ``expected`` (one goal or a list) against the ``metrics`` this
        run reports: ``{metric: eval_accuracy, at_least: 0.97}`` or ``{metric: eval_loss,
        at_most: 1.5}``."""
        self.goals = check_expected(self.config.get("expected"), tuple(metrics))

    def arguments(self, defaults: dict[str, Any] | None = None, **forced: Any) -> Any:
        """The ``training`` section over the task's ``defaults`` (``forced`` over both), as
        TrainingArguments; its ``output_dir`` is the run's folder."""
        from wxb.train.arguments import TrainingArguments

        section = self.config.get("training") or {}
        if not isinstance(section, dict):
            raise ConfigError(f"config section 'training' must be a mapping of fields, "
                              f"got {section!r}")
        self.args = TrainingArguments.from_dict({**(defaults or {}), **section, **forced})
        return self.args

    @property
    def output_dir(self) -> Path:
        if self.args is not None:
            return Path(self.args.output_dir)
        return Path((self.config.get("training") or {}).get("output_dir", f"runs/{self.task}"))

    def trainer(self, model: Any, args: Any, *, callbacks: Iterable[Any] = (),
                **kwargs: Any) -> Any:
        """A Trainer for ``model`` with the run's time budget among its callbacks (its clock
        starts with training)."""
        from wxb.train.callbacks import TimeBudget
        from wxb.train.trainer import Trainer

        self.budget = TimeBudget(self.max_time) if self.max_time is not None else None
        trainer = Trainer(model, args, callbacks=[*callbacks, *([self.budget] if self.budget
                                                                else [])], **kwargs)
        if trainer.precision_reason:
            self.log(trainer.precision_reason)
        return trainer

    # ------------------------------------------------------------------------- after training

    def resolved(self, **sections: Any) -> dict[str, Any]:
        """The ``config`` of result.json: the recipe's own keys, every section with its
        defaults filled in (``sections`` replace the ones given), the training arguments, the
        budget and the goal. Passing it back in reruns the same experiment."""
        values = {name: s.to_dict() for name, s in self.sections.items()}
        if self.args is not None:
            values["training"] = self.args.to_dict()
        values.update(sections)
        own = {k: self.config[k] for k in ("name", "description", "task", "reported")
               if k in self.config}
        expected = self.config.get("expected")
        return {**own, **values, "max_time_seconds": self.max_time,
                **({"expected": expected} if expected is not None else {})}

    def finish(self, metrics: dict[str, float], *, trainer: Any = None, output: Any = None,
               model_dir: str | Path | None = None, plots: dict[str, Any] | None = None,
               metric: str | None = None, config: dict[str, Any] | None = None,
               **fields: Any) -> dict[str, Any]:
        """Judge the goal, write ``<output_dir>/result.json`` (atomically) and return it.

        ``metric`` is the headline score (default: the goal's metric, else the first of
        ``metrics``); ``config`` replaces ``resolved()``; ``fields`` are the task's own.
        """
        judged = [judge_expected(goal, metrics) for goal in self.goals]
        metric = metric or (judged[0]["metric"] if judged else next(iter(metrics), None))
        curve = self.output_dir / "loss_curve.png"
        result: dict[str, Any] = {
            "task": self.task,
            "recipe": self.config.get("name"),
            "metric": metric,
            "value": metrics.get(metric) if metric else None,
            "expected": (judged[0] if len(judged) == 1 else judged) if judged else None,
            "met": all(g["met"] for g in judged) if judged else None,
            "metrics": metrics,
            "steps": trainer.state.global_step if trainer else None,
            "epoch": trainer.state.epoch if trainer else None,
            "wall_time_s": round(time.perf_counter() - self.start, 2),
            "train_runtime_s": round(output.metrics["train_runtime"], 2) if output else None,
            "stopped_by_time_budget": bool(self.budget and self.budget.stopped),
            "num_parameters": count_parameters(trainer.model) if trainer else None,
            "trainable_parameters": count_parameters(trainer.model, trainable_only=True)
            if trainer else None,
            "precision": getattr(trainer, "precision", None),
            "machine": machine(),
            "model_dir": str(model_dir) if model_dir is not None else None,
            "loss_curve": str(curve) if curve.is_file() else None,
            "plots": plots or {},
            **fields,
            "config": self.resolved() if config is None else config,
            "reported": self.config.get("reported"),
        }
        atomic_write_json(self.output_dir / "result.json", result)
        return result


def count_parameters(model: Any, trainable_only: bool = False) -> int:
    """A model's parameters (wxb models count QLoRA's packed 4-bit weights too)."""
    if hasattr(model, "num_parameters"):
        return model.num_parameters(trainable_only=trainable_only)
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def evaluate_with(trainer: Any, dataset: Any,
                  compute_metrics: Callable[[Any], dict[str, float]]) -> dict[str, float]:
    """``trainer.evaluate(dataset)`` with other metrics than the Trainer's own (those of
    another split); the names without their ``eval_`` prefix."""
    metric_fn, trainer.compute_metrics = trainer.compute_metrics, compute_metrics
    try:
        scores = trainer.evaluate(dataset)
    finally:
        trainer.compute_metrics = metric_fn
    return {k.removeprefix("eval_"): v for k, v in scores.items()}


def check_expected(expected: Any, metrics: tuple[str, ...]) -> list[dict[str, Any]]:
    """The goals of ``expected`` (None, one mapping or a list of them), each
    ``{metric, at_least | at_most}`` naming one of ``metrics``, values as floats."""
    if expected is None:
        return []
    goals = []
    for goal in expected if isinstance(expected, list) else [expected]:
        if (not isinstance(goal, dict) or "metric" not in goal
                or len(set(goal) & set(BOUNDS)) != 1 or set(goal) - {"metric", *BOUNDS}):
            raise ConfigError(f"expected must be a mapping with metric and one of at_least, "
                              f"at_most, e.g. {{metric: eval_accuracy, at_least: 0.95}}; got "
                              f"{goal!r}")
        if goal["metric"] not in metrics:
            raise ConfigError(f"expected.metric {goal['metric']!r} is not reported; choose one "
                              f"of: {', '.join(metrics)}")
        bound = next(b for b in BOUNDS if b in goal)
        goals.append({"metric": goal["metric"],
                      bound: coerce(f"expected.{bound}", goal[bound], float)})
    return goals


def judge_expected(goal: dict[str, Any], metrics: dict[str, float]) -> dict[str, Any]:
    """``goal`` (from ``check_expected``) with the measured ``value`` and whether it was met."""
    value = metrics[goal["metric"]]
    met = value >= goal["at_least"] if "at_least" in goal else value <= goal["at_most"]
    return {**goal, "value": value, "met": bool(met)}


def machine() -> dict[str, Any]:
    """What ran the numbers: the CPU's model and the flags that decide its speed, the number of
    threads torch uses, and the GPU if one was used (numbers differ by machine)."""
    import torch

    from wxb.train.precision import cpu_flags

    flags = cpu_flags()
    found = {"cpu": _cpu_model(), "cpu_count": os.cpu_count(),
             "threads": torch.get_num_threads(),
             "cpu_flags": [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "neon")
                           if f in flags]}
    if torch.cuda.is_available():
        found["gpu"] = torch.cuda.get_device_name()
    return found


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
