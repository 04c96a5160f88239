"""Printing a task's result, the same frame for every task with the scores each task leads
with."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def print_result(result: dict[str, Any]) -> None:
    """The model, the task's scores, the goal, the run's length and the files it wrote."""
    if result.get("num_parameters") is not None:
        trained = result.get("trainable_parameters")
        share = "" if trained in (None, result["num_parameters"]) else f" ({trained:,} trained)"
        print(f"model      {result['num_parameters']:,} parameters{share}, saved in "
              f"{result['model_dir']}")
    for line in SCORES.get(result["task"], _headline)(result):
        print(line)
    for goal in _goals(result.get("expected")):
        bound = "at_least" if "at_least" in goal else "at_most"
        print(f"goal       {goal['metric']} {goal['value']:.4f} ({bound.replace('_', ' ')} "
              f"{goal[bound]}: {'met' if goal['met'] else 'NOT met'})")
    if result.get("steps") is not None:
        print(f"training   {result['steps']} steps, {result['wall_time_s']:.1f} s"
              + (" (stopped by the time budget)" if result.get("stopped_by_time_budget")
                 else ""))
    if result.get("loss_curve"):
        print(f"loss curve {result['loss_curve']}")
    output_dir = (result.get("config") or {}).get("training", {}).get("output_dir")
    if output_dir:
        print(f"result     {Path(output_dir) / 'result.json'}")


def _goals(expected: Any) -> list[dict[str, Any]]:
    return [] if not expected else expected if isinstance(expected, list) else [expected]


def _headline(result: dict[str, Any]) -> list[str]:
    if result.get("metric") is None:
        return []
    return [f"{result['metric']} {result['value']:.4f}"]


def _image(result: dict[str, Any]) -> list[str]:
    m = result["metrics"]
    return [f"test       accuracy {m['eval_accuracy']:.4f}, loss {m['eval_loss']:.4f}"]


def _text(result: dict[str, Any]) -> list[str]:
    m, plots = result["metrics"], result.get("confusion_matrices") or {}
    return [f"{split:<10} accuracy {m[f'{p}_accuracy']:.4f}, macro F1 {m[f'{p}_f1']:.4f}, "
            f"confusion matrix {plots.get(split)}"
            for split, p in (("validation", "eval"), ("test", "test")) if f"{p}_accuracy" in m]


def _tags(result: dict[str, Any]) -> list[str]:
    m = result["metrics"]
    return [f"{split:<10} entity F1 {m[f'{p}_entity_f1']:.4f}, token F1 without O "
            f"{m[f'{p}_token_f1_without_o']:.4f}"
            for split, p in (("validation", "eval"), ("test", "test")) if f"{p}_entity_f1" in m]


def _sft(result: dict[str, Any]) -> list[str]:
    m = result["metrics"]
    lines = [f"validation loss on the answers {m['eval_loss_before']:.4f} before, "
             f"{m['eval_loss']:.4f} after (perplexity {m['perplexity']:.2f})"]
    for s in result.get("samples") or []:
        lines.append(f"{s['prompt']}\n  before: {s['before']}\n  after:  {s['after']}")
    return lines


def _pairs(result: dict[str, Any]) -> list[str]:
    m = result["metrics"]
    return [f"held out   reward accuracy {m['eval_rewards/accuracies_before']:.4f} -> "
            f"{m['eval_rewards/accuracies']:.4f}, margin {m['eval_rewards/margins_before']:.4f} "
            f"-> {m['eval_rewards/margins']:.4f}"]


# The lines of scores each task leads with; other tasks print their headline metric.
SCORES: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "image-classify": _image, "text-classify": _text, "token-classify": _tags, "sft": _sft,
    "dpo": _pairs, "reward": _pairs,
}
