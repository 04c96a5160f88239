"""Fine-tuning methods side by side: the same model, data and budget, trained once per
variant (full, LoRA, QLoRA, ...), each in a fresh process so its peak memory is its own.

The config (a recipe with ``task: compare-finetune``) is the config of one task that trains
(text classification by default) plus::

    pipeline: text-classify         # the task each variant runs: sft, dpo, any that trains

    variants:                       # the first one is the baseline the others are compared to
      full:  {finetune: {strategy: full}, training: {learning_rate: 1.0e-4}}
      lora:  {finetune: {strategy: lora, r: 8}, training: {learning_rate: 1.0e-3}}
    metric: eval_accuracy           # the score compared
    expected:                       # one goal or a list of goals on the reported metrics
      - {metric: lora_eval_accuracy_gap, at_most: 0.02}
      - {metric: lora_memory_ratio, at_most: 0.5}

For each variant ``v`` the result reports ``v_<metric>`` (and the variant's other scores,
prefixed), ``v_trainable_parameters``, ``v_training_memory_mib`` (the model's weights plus
what the resident memory grew by while training: ``wxb.train.memory``), ``v_wall_time_s``; for
each variant after the first,
``v_<metric>_gap`` (baseline minus variant: how much the method gave up) and
``v_memory_ratio`` (its training memory over the baseline's). Each variant's own run folder
(``<output_dir>/<variant>``) holds its checkpoints, model, adapter and result.json. The
children run with ``wxb.train.memory.ALLOCATOR_ENV``, so that their resident memory follows
what training holds rather than what the allocator kept.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wxb.config import merge_config
from wxb.errors import ConfigError, WxbError
from wxb.tasks import get_task, task_names
from wxb.tasks.run import COMMON_KEYS, Run
from wxb.train.memory import ALLOCATOR_ENV

TASK = "compare-finetune"
OWN_KEYS = ("variants", "metric", "pipeline")
DEFAULT_PIPELINE = "text-classify"
DEFAULT_OUTPUT_DIR = "runs/compare"
PER_VARIANT = ("trainable_parameters", "training_memory_mib", "wall_time_s")
# What result.json keeps of each variant's own result.
VARIANT_FIELDS = ("metrics", "trainable_parameters", "num_parameters", "memory_mib",
                  "wall_time_s", "steps", "model_dir")


# None of its own: the sections are the compared task's, checked by each variant's run.
SECTIONS: dict[str, type] = {}


def compare_finetune(config: dict[str, Any], *, resume: bool | str = False,
                     log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every variant of ``config`` and return the contents of ``result.json``.

    A comparison cannot ``resume``: each variant's memory is measured over a whole run.
    """
    if resume:
        raise ConfigError("compare-finetune cannot resume: each variant's training memory is "
                          "measured over a whole run in a fresh process; run it again")
    sections: tuple[str, ...] = ()
    if isinstance(config, dict):
        # The sections are those of the task compared: each variant's own run checks them.
        sections = tuple(k for k in config if k not in (*COMMON_KEYS, *OWN_KEYS))
        if isinstance(config.get("training", {}), dict):
            config = merge_config({"training": {"output_dir": DEFAULT_OUTPUT_DIR}}, config)
    run = Run(TASK, config, SECTIONS, log=log, extra_keys=(*OWN_KEYS, *sections))
    variants = run.config.get("variants")
    if not isinstance(variants, dict) or len(variants) < 2:
        raise ConfigError("compare-finetune needs variants: a mapping of at least two names to "
                          "config changes, e.g. {full: {finetune: {strategy: full}}, lora: "
                          "{finetune: {strategy: lora}}}")
    metric = run.config.get("metric", "eval_accuracy")
    pipeline = _training_task(run.config.get("pipeline", DEFAULT_PIPELINE))
    names = list(variants)
    run.expect(_metric_names(names, metric))
    base = {k: v for k, v in run.config.items()
            if k not in (*OWN_KEYS, "expected", "reported")}

    runs: dict[str, dict[str, Any]] = {}
    for name in names:
        variant = merge_config(base, variants[name] or {})
        variant["training"] = {**(variant.get("training") or {}),
                               "output_dir": str(run.output_dir / name)}
        run.log(f"--- {name}: {variant.get('finetune', {})}")
        runs[name] = result = _run_in_fresh_process(pipeline, variant)
        if metric not in result["metrics"]:
            raise ConfigError(f"metric {metric!r} is not among {name}'s scores: "
                              f"{', '.join(result['metrics'])}")
        run.log(f"{name}: {metric} {result['metrics'][metric]:.4f}, "
                f"{result['trainable_parameters']:,} trainable, training memory "
                f"{result['memory_mib']['training']:.0f} MiB, {result['wall_time_s']:.0f} s")

    # The headline: the goal's metric, else how far the second variant is from the first.
    headline = None if run.goals else f"{names[1]}_{metric}_gap"
    return run.finish(_compare(runs, metric), metric=headline, config=run.config,
                      pipeline=pipeline,
                      variants={name: {k: result[k] for k in VARIANT_FIELDS}
                                for name, result in runs.items()})


def _training_task(name: Any) -> str:
    """The registered task ``name`` stands for, if it trains (and is not a comparison)."""
    trains = [n for n in task_names(trains=True) if n != TASK]
    try:
        task = get_task(name) if isinstance(name, str) else None
    except ConfigError:
        task = None
    if task is None or task.name not in trains:
        raise ConfigError(f"unknown compare pipeline {name!r}; choose one of the tasks that "
                          f"train: {', '.join(trains)}")
    return task.name


def _metric_names(names: list[str], metric: str) -> tuple[str, ...]:
    others = names[1:]
    per_variant = [f"{n}_{k}" for n in names for k in (metric, *PER_VARIANT)]
    return (*per_variant, *(f"{n}_{metric}_gap" for n in others),
            *(f"{n}_memory_ratio" for n in others))


def _compare(runs: dict[str, dict[str, Any]], metric: str) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for name, run in runs.items():
        metrics.update({f"{name}_{k}": v for k, v in run["metrics"].items()})
        metrics[f"{name}_trainable_parameters"] = run["trainable_parameters"]
        metrics[f"{name}_training_memory_mib"] = run["memory_mib"]["training"]
        metrics[f"{name}_wall_time_s"] = run["wall_time_s"]
    first, *others = runs
    for name in others:
        metrics[f"{name}_{metric}_gap"] = round(
            runs[first]["metrics"][metric] - runs[name]["metrics"][metric], 6)
        metrics[f"{name}_memory_ratio"] = round(
            runs[name]["memory_mib"]["training"] / runs[first]["memory_mib"]["training"], 4)
    return metrics


def _run_in_fresh_process(task: str, config: dict[str, Any]) -> dict[str, Any]:
    """The task ``task`` run on ``config`` in a new interpreter (a process's peak memory never
    goes down, so each method needs its own); a WxbError there is raised here with its
    message."""
    context = multiprocessing.get_context("spawn")
    errors = context.Queue()
    child = context.Process(target=_child, args=(task, config, errors))
    saved = {name: os.environ.get(name) for name in ALLOCATOR_ENV}
    os.environ.update(ALLOCATOR_ENV)  # read by the child's C library as it starts
    try:
        child.start()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value
    child.join()
    if not errors.empty():
        raise WxbError(errors.get())
    if child.exitcode != 0:
        raise WxbError(f"the fine-tuning process stopped with exit code {child.exitcode}")
    return json.loads((Path(config["training"]["output_dir"]) / "result.json").read_text())


def _child(task: str, config: dict[str, Any], errors: Any) -> None:
    try:
        get_task(task).train_function()(config, log=print)
    except WxbError as err:
        errors.put(str(err))
