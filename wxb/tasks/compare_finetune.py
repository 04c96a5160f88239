"""Fine-tuning methods side by side: the same model, data and budget, trained once per
variant (full, LoRA, QLoRA, ...), each in a fresh process so its peak memory is its own.

The config (a recipe with ``task: compare-finetune``) is the config of one fine-tuning
pipeline (text classification, ``wxb.train.finetune``, by default) plus::

    pipeline: text-classify         # or sft (wxb.train.sft), dpo (wxb.train.dpo)

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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wxb.config import merge_config
from wxb.errors import ConfigError, WxbError
from wxb.io import atomic_write_json
from wxb.train.from_config import check_expected, judge_expected
from wxb.train.memory import ALLOCATOR_ENV

OWN_KEYS = ("variants", "metric", "pipeline")
PIPELINES = ("text-classify", "sft", "dpo")
PER_VARIANT = ("trainable_parameters", "training_memory_mib", "wall_time_s")


def compare_finetune(config: dict[str, Any], *,
                     log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every variant of ``config`` and return the contents of ``result.json``."""
    start = time.perf_counter()
    log = log or (lambda line: None)
    variants = config.get("variants")
    if not isinstance(variants, dict) or len(variants) < 2:
        raise ConfigError("compare-finetune needs variants: a mapping of at least two names to "
                          "config changes, e.g. {full: {finetune: {strategy: full}}, lora: "
                          "{finetune: {strategy: lora}}}")
    metric = config.get("metric", "eval_accuracy")
    pipeline = config.get("pipeline", "text-classify")
    if pipeline not in PIPELINES:
        raise ConfigError(f"unknown compare pipeline {pipeline!r}; choose one of: "
                          f"{', '.join(PIPELINES)}")
    names = list(variants)
    reported = _metric_names(names, metric)
    goals = config.get("expected")
    goals = [check_expected(g, reported) for g in (goals if isinstance(goals, list)
                                                   else [goals] if goals else [])]
    output_dir = Path((config.get("training") or {}).get("output_dir", "runs/compare"))
    base = {k: v for k, v in config.items() if k not in (*OWN_KEYS, "expected", "reported")}

    runs: dict[str, dict[str, Any]] = {}
    for name in names:
        variant = merge_config(base, variants[name] or {})
        variant["training"] = {**(variant.get("training") or {}),
                               "output_dir": str(output_dir / name)}
        log(f"--- {name}: {variant.get('finetune', {})}")
        runs[name] = _run_in_fresh_process(pipeline, variant)
        run = runs[name]
        if metric not in run["metrics"]:
            raise ConfigError(f"metric {metric!r} is not among {name}'s scores: "
                              f"{', '.join(run['metrics'])}")
        log(f"{name}: {metric} {run['metrics'][metric]:.4f}, "
            f"{run['trainable_parameters']:,} trainable, "
            f"training memory {run['memory_mib']['training']:.0f} MiB, {run['wall_time_s']:.0f} s")

    metrics = _compare(runs, metric)
    result: dict[str, Any] = {
        "task": "compare-finetune", "metric": metric, "metrics": metrics,
        "variants": {name: {k: run[k] for k in ("metrics", "trainable_parameters",
                                                "num_parameters", "memory_mib", "wall_time_s",
                                                "steps", "model_dir")}
                     for name, run in runs.items()},
        "wall_time_s": round(time.perf_counter() - start, 2),
        "config": config,
    }
    if goals:
        result["expected"] = [judge_expected(g, metrics) for g in goals]
    atomic_write_json(output_dir / "result.json", result)
    return result


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


def _run_in_fresh_process(pipeline: str, config: dict[str, Any]) -> dict[str, Any]:
    """The ``pipeline`` run on ``config`` in a new interpreter (a process's peak memory never
    goes down, so each method needs its own); a WxbError there is raised here with its
    message."""
    context = multiprocessing.get_context("spawn")
    errors = context.Queue()
    child = context.Process(target=_child, args=(pipeline, config, errors))
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


def _child(pipeline: str, config: dict[str, Any], errors: Any) -> None:
    try:
        pipeline_function(pipeline)(config, log=print)
    except WxbError as err:
        errors.put(str(err))


def pipeline_function(task: str) -> Callable[..., dict[str, Any]]:
    """The function that runs one fine-tuning pipeline's config (imported on use)."""
    if task == "sft":
        from wxb.train.sft import train_sft

        return train_sft
    if task == "dpo":
        from wxb.train.dpo import train_dpo

        return train_dpo
    from wxb.train.finetune import finetune

    return finetune
