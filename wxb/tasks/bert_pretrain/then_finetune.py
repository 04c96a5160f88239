"""What pretraining brings, measured (task ``pretrain-finetune``): pretrain BERT, fine-tune it
on a labelled task, and fine-tune the same architecture from random weights with the same
tokenizer, data, steps and seed.

The config (a recipe with ``task: pretrain-finetune`` is one)::

    pretrain:    {<a bert-pretrain config: data, tokenizer, model, masking, training>}
    finetune:    {<a text-classify config without model: data, finetune, training>}
    train_sizes: [1000, null]     # labelled training examples per comparison (null: all)
    training:    {output_dir: runs/pretrain-finetune}

The run folder holds ``pretrain/`` and one ``finetune-<init>[-<n>]/`` per fine-tuning run,
each with its own result.json, and the comparison's result.json.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wxb.config import coerce
from wxb.errors import CheckpointError, ConfigError
from wxb.tasks.bert_pretrain.train import pretrain_bert, resolved_settings
from wxb.tasks.run import Run
from wxb.tasks.sections import Section

STAGES = ("pretrain", "finetune")
INITS = ("pretrained", "random")
# The fine-tuning scores compared, one of each per training size.
COMPARED = ("accuracy_gain", "pretrained_test_accuracy", "random_test_accuracy")


@dataclasses.dataclass
class TrainingSection(Section):
    """Where the comparison goes; each stage's own training settings are in its config."""

    output_dir: str = "runs/pretrain-finetune"


# None that the run builds: ``pretrain`` and ``finetune`` are the configs of other tasks,
# checked by their own runs; the training section is the output folder alone (TrainingSection).
SECTIONS: dict[str, type[Section]] = {}


def pretrain_then_finetune(config: dict[str, Any], *, resume: bool | str = False,
                           log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Pretrain BERT (``config["pretrain"]``, a ``pretrain_bert`` config), then fine-tune it on
    a labelled task (``config["finetune"]``, a ``finetune`` config without ``model``) and
    fine-tune the same architecture from random weights. ``train_sizes`` (default ``[null]``:
    all) repeats the comparison with that many labelled training examples, where pretraining
    is expected to matter most. Returns every result and the differences in accuracy
    (``accuracy_gain`` for all the labels, ``accuracy_gain_<n>`` for n of them; positive when
    pretraining helped).

    A pretraining run already in ``<output_dir>/pretrain`` with the same resolved sections is
    reused (the log says so), so that changing the fine-tuning does not cost the pretraining
    again. ``resume=True`` continues every stage that left a checkpoint in its folder (an
    interrupted run); the stages not begun start afresh.
    """
    from wxb.tasks import get_task  # the fine-tuning stage is the text-classify task

    finetune = get_task("text-classify").train_function()

    run = Run("pretrain-finetune", config, SECTIONS, log=log,
              extra_keys=(*STAGES, "train_sizes"))
    training = TrainingSection.from_dict(run.config.get("training"), "training")
    if resume not in (True, False):
        raise ConfigError("a pretrain-then-finetune run resumes the stages in its own "
                          "training.output_dir: pass resume=True, not a folder")
    missing = [name for name in STAGES if name not in run.config]
    if missing:
        raise ConfigError(f"a pretrain-then-finetune config needs the sections pretrain and "
                          f"finetune; {missing[0]!r} is missing")
    if "model" in (run.config["finetune"] or {}):
        raise ConfigError("the finetune section takes its model from the pretraining stage; "
                          "leave model out")
    sizes = run.config.get("train_sizes") or [None]
    if not isinstance(sizes, list):
        raise ConfigError(f"train_sizes must be a list such as [500, null], got {sizes!r}")
    sizes = [None if n is None else coerce("train_sizes", n, int) for n in sizes]
    suffixes = {n: "" if n is None else f"_{n}" for n in sizes}
    run.expect(("mlm_accuracy", *(f"{m}{s}" for s in suffixes.values() for m in COMPARED)))
    output_dir = Path(training.output_dir)

    pretrained = _pretraining(run.config["pretrain"], output_dir / "pretrain", resume, run.log)
    metrics = {"mlm_accuracy": pretrained["metrics"]["mlm_accuracy"],
               "nsp_accuracy": pretrained["metrics"]["nsp_accuracy"]}
    runs: dict[str, Any] = {}
    for size, suffix in suffixes.items():
        accuracy = {}
        for init in INITS:
            stage = copy.deepcopy(run.config["finetune"])
            stage["model"] = {"pretrained": pretrained["model_dir"], "init": init}
            stage["data"] = {**(stage.get("data") or {}), "train_size": size}
            folder = output_dir / f"finetune-{init}{suffix.replace('_', '-')}"
            stage["training"] = {**(stage.get("training") or {}), "output_dir": str(folder)}
            run.log(f"== fine-tuning from {init} weights on "
                    f"{'all the' if size is None else size} training examples")
            done = runs[f"{init}{suffix}"] = finetune(stage, resume=_resumable(folder, resume),
                                                      log=run.log)
            split = "test" if "test_accuracy" in done["metrics"] else "eval"
            accuracy[init] = done["metrics"][f"{split}_accuracy"]
        metrics.update({f"pretrained_test_accuracy{suffix}": accuracy["pretrained"],
                        f"random_test_accuracy{suffix}": accuracy["random"],
                        f"accuracy_gain{suffix}": accuracy["pretrained"] - accuracy["random"]})
    return run.finish(metrics, model_dir=pretrained["model_dir"], pretraining=pretrained,
                      finetuning=runs,
                      config=run.resolved(training=training.to_dict(), train_sizes=sizes))


def _pretraining(section: dict[str, Any], folder: Path, resume: bool,
                 log: Callable[[str], None]) -> dict[str, Any]:
    """Pretrain into ``folder``, or reuse the finished run there when its resolved sections
    are this config's."""
    stage = copy.deepcopy(section)
    stage["training"] = {**(stage.get("training") or {}), "output_dir": str(folder)}
    previous = folder / "result.json"
    if previous.is_file():
        done = json.loads(previous.read_text(encoding="utf-8"))
        settings = json.loads(json.dumps(resolved_settings(stage)))  # as JSON stores it
        if (all(done["config"].get(k) == v for k, v in settings.items())
                and Path(done["model_dir"]).is_dir()):
            log(f"== pretraining: reusing the finished run in {folder} (same config); "
                "delete it to pretrain again")
            return done
    log("== pretraining")
    return pretrain_bert(stage, resume=_resumable(folder, resume), log=log)


def _resumable(folder: Path, resume: bool) -> bool:
    """Whether a stage continues: ``resume`` asked for it and ``folder`` holds a checkpoint."""
    from wxb.train.checkpoint import find_checkpoint

    if not resume:
        return False
    try:
        find_checkpoint(folder)
    except CheckpointError:
        return False
    return True
