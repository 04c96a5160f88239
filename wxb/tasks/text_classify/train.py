"""Fine-tuning an encoder (or training an RNN) for text classification, as a function of one
config (task ``text-classify``; what `wxb finetune` runs).

    table(s) -> texts, pairs, labels -> tokenizer -> model with a fresh classifier head
             -> what trains (full, head, bottom layers frozen, gradual unfreezing, layer decay)
             -> Trainer -> validation / test metrics, confusion matrices -> model/ + result.json

The config (a recipe with ``task: text-classify`` is one)::

    model:    {pretrained: DIR | hub id, ...} or {type: bert | rnn, tokenizer: ..., ...}
              (see wxb.tasks.text_classify.model)
    data:     {train: FILE, validation: FILE, test: FILE}
              or {path: FILE, validation_size: 0.1, test_size: 0.1, split_seed: 0}
              + text_column, text_pair_column, label_column, label_names | label_name_column,
                max_length: 128, truncation: true,
                train_size: N (a seeded subset of N training examples: learning from few labels)
    finetune: {strategy: full | head | pooler_head | bottom | gradual | lora | qlora, ...}
              (wxb.tasks.models.FinetuneSection: freeze_layers, layer_decay, r, lora_alpha, ...)
    training: {<TrainingArguments fields>}
    max_time_seconds: 900     # stop training after this much wall time

The model that is evaluated and saved is the last one (choosing a checkpoint by its
validation score and then reporting that score would flatter it); the Trainer's best
checkpoint stays on disk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wxb.data.datasets import DictDataset, train_test_split
from wxb.data.text import (
    EncodedTexts,
    LabelSet,
    PaddingCollator,
    TextExamples,
    encode_examples,
    read_rows,
    text_examples,
)
from wxb.errors import ConfigError, DataError
from wxb.metrics import classification_report, confusion_matrix
from wxb.peft.strategy import apply_strategy, save_finetuned
from wxb.tasks.models import FinetuneSection
from wxb.tasks.run import Run, evaluate_with
from wxb.tasks.sections import Section, at_least
from wxb.tasks.text_classify.model import ModelSection, build_classifier

TRAINING_DEFAULTS = {"output_dir": "runs/finetune", "num_train_epochs": 3,
                     "learning_rate": 5e-5, "warmup_ratio": 0.1, "weight_decay": 0.01,
                     "per_device_train_batch_size": 32, "eval_strategy": "epoch",
                     "metric_for_best_model": "accuracy"}
# The share of a single data.path held out for each of validation and test, unless given.
SPLIT_SIZE = 0.1
SPLITS = (("validation", "eval"), ("test", "test"))  # split -> prefix of its metrics
SPLIT_METRICS = ("accuracy", "loss", "precision", "recall", "f1")
METRICS = tuple(f"{prefix}_{m}" for _, prefix in SPLITS for m in SPLIT_METRICS)


@dataclasses.dataclass
class DataSection(Section):
    """Three tables (``train``, ``validation``, ``test``) or one (``path``) split by seeded
    shares; which columns hold the texts, the pairs and the labels; how texts are cut."""

    train: str | None = None
    validation: str | None = None
    test: str | None = None
    path: str | None = None
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    label_names: dict | None = None
    label_name_column: str | None = None
    max_length: int = 128
    truncation: bool = True
    validation_size: float | None = None
    test_size: float | None = None
    split_seed: int = 0
    train_size: int | None = None

    def check(self) -> None:
        if self.given("path") == self.given("train"):
            raise self.fail("give either train (with validation and/or test files) or path "
                            "(one file, split by validation_size and test_size)")
        for key in ("validation_size", "test_size"):
            if self.given("train") and self.given(key):
                raise ConfigError(f"data.{key} splits a single data.path; with data.train, "
                                  "give the validation and test files instead")
            if self.given("path") and not self.given(key):
                setattr(self, key, SPLIT_SIZE)
        at_least("data.train_size", self.train_size, 1)
        if self.given("label_names") and self.given("label_name_column"):
            raise self.fail("give label_names or label_name_column, not both")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().to_dict().items() if v is not None}


SECTIONS = {"model": ModelSection, "data": DataSection, "finetune": FinetuneSection}


def finetune(config: dict[str, Any], *, resume: bool | str = False,
             log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fine-tune the configured classifier and return the contents of ``result.json``.

    ``resume`` continues the run in ``training.output_dir`` (True) or from a given run or
    checkpoint folder. ``log`` receives one line per stage.

    Writes into ``output_dir``: the Trainer's checkpoints, log.jsonl and loss_curve.png, a
    confusion matrix per evaluated split, the model with its tokenizer as ``model/`` (and the
    LoRA adapter as ``adapter/``) and ``result.json``.
    """
    from wxb.train.memory import TrainingMemory

    run = Run("text-classify", config, SECTIONS, log=log)
    data, method = run["data"], run["finetune"].method
    run.expect(METRICS)
    splits, labels = _read_splits(data)
    defaults = dict(TRAINING_DEFAULTS)
    if "validation" not in splits:  # nothing to evaluate on during training
        defaults.update(eval_strategy="no", metric_for_best_model="loss")
    args = run.arguments(defaults)
    run.log("data: " + ", ".join(f"{name} {len(s.labels):,}" for name, s in splits.items())
            + f"; {len(labels.values)} labels")
    model, tokenizer = build_classifier(run["model"], labels, seed=args.seed,
                                        texts=splits["train"].texts)
    if tokenizer.pad_token_id is None:
        raise ConfigError("the tokenizer has no [PAD] token; batches of texts need one")
    encoded = {name: encode_examples(s, labels, tokenizer, max_length=data.max_length,
                                     truncation=data.truncation,
                                     source=getattr(data, name) or f"{data.path} ({name} split)")
               for name, s in splits.items()}
    optimizers, callbacks = apply_strategy(model, method, args)
    run.log(f"model: {type(model).__name__}, {model.num_parameters():,} parameters, "
            f"{model.num_parameters(trainable_only=True):,} trainable ({method['strategy']})")
    trainer = run.trainer(model, args, train_dataset=encoded["train"],
                          eval_dataset=encoded.get("validation"),
                          data_collator=PaddingCollator(tokenizer.pad_token_id),
                          compute_metrics=classification_report, optimizers=optimizers,
                          callbacks=callbacks)
    memory = TrainingMemory()
    memory.start(model)
    output = trainer.train(resume_from_checkpoint=resume)
    memory_mib = memory.report()  # before evaluation and saving, which take memory of their own

    metrics: dict[str, float] = {}
    plots: dict[str, str] = {}
    for name, prefix in SPLITS:
        if name not in encoded:
            continue
        scores, matrix = evaluate_split(trainer, encoded[name])
        metrics.update({f"{prefix}_{k}": v for k, v in scores.items()})
        plots[name] = str(_plot(matrix, labels.names, run.output_dir / f"confusion_{name}.png",
                                f"{run.config.get('name', 'fine-tuned')}: {name} split"))
        run.log(f"{name}: accuracy {scores['accuracy']:.4f}, macro F1 {scores['f1']:.4f}")
    saved = save_finetuned(model, tokenizer, run.output_dir / "model", method)
    return run.finish(metrics, trainer=trainer, output=output, model_dir=saved["model_dir"],
                      plots=plots, memory_mib=memory_mib,
                      examples={name: len(s.labels) for name, s in splits.items()},
                      labels=labels.names, adapter_dir=saved["adapter_dir"],
                      confusion_matrices=plots)


def evaluate_split(trainer: Any, dataset: EncodedTexts) -> tuple[dict[str, float], np.ndarray]:
    """Loss, accuracy, macro P/R/F1 and the confusion matrix of the model on ``dataset``."""
    predictions: list[np.ndarray] = []

    def keep(eval_pred) -> dict[str, float]:
        predictions.append(eval_pred.predictions.argmax(-1))
        return classification_report(eval_pred)

    scores = evaluate_with(trainer, dataset, keep)
    num_labels = trainer.model.config.num_labels
    matrix = confusion_matrix(predictions[0], np.array(dataset.labels), num_labels)
    return scores, matrix


# ----------------------------------------------------------------------------- the data


def _read_splits(data: DataSection) -> tuple[dict[str, TextExamples], LabelSet]:
    """The train / validation / test examples and the label set (from the training split)."""
    columns = {"text_column": data.text_column, "text_pair_column": data.text_pair_column,
               "label_column": data.label_column}
    name_column = data.label_name_column

    def read(path: str) -> tuple[TextExamples, dict[str, str]]:
        rows = read_rows(path)
        examples = text_examples(rows, path, **columns)
        if name_column is None:
            return examples, {}
        if name_column not in rows[0]:
            raise DataError(f"{path} has no column {name_column!r} (label_name_column); its "
                            f"columns are: {', '.join(rows[0])}")
        return examples, {str(r[data.label_column]).strip(): str(r[name_column]) for r in rows}

    if data.given("path"):
        whole, names = read(data.path)
        splits = _split(whole, data)
    else:
        splits, names = {}, {}
        for name in ("train", "validation", "test"):
            if data.given(name):
                splits[name], found = read(getattr(data, name))
                names.update(found)
    size = data.train_size
    if size is not None:
        train = splits["train"]
        if size > len(train.labels):
            raise ConfigError(f"data.train_size {size} is more than the "
                              f"{len(train.labels)} training examples")
        order = torch.randperm(len(train.labels), generator=torch.Generator().manual_seed(
            data.split_seed))[:size].tolist()
        splits["train"] = _take(train, order)
    if data.label_names is not None:
        names = {str(k): str(v) for k, v in data.label_names.items()}
    labels = LabelSet.from_values(splits["train"].labels, names)
    if len(labels.values) < 2:
        raise DataError(f"the training data has a single label ({labels.values[0]!r}); a "
                        "classifier needs at least two")
    return splits, labels


def _split(whole: TextExamples, data: DataSection) -> dict[str, TextExamples]:
    """A fixed, seeded split of one table into train / validation / test."""
    index = DictDataset(i=torch.arange(len(whole.texts)))
    parts: dict[str, list[int]] = {}
    rest = index
    for name in ("test", "validation"):
        size = getattr(data, f"{name}_size")
        if size == 0:
            continue
        # The fraction is of the whole table, whatever was taken out before.
        share = size * len(index) / len(rest)
        rest, held = train_test_split(rest, share, data.split_seed)
        parts[name] = held.tensors["i"].tolist()
    parts = {"train": rest.tensors["i"].tolist(), **parts}
    return {name: _take(whole, ids) for name, ids in parts.items()}


def _take(examples: TextExamples, ids: list[int]) -> TextExamples:
    return TextExamples([examples.texts[i] for i in ids],
                        [examples.pairs[i] for i in ids] if examples.pairs else None,
                        [examples.labels[i] for i in ids])


def _plot(matrix: np.ndarray, names: list[str], path: Path, title: str) -> Path:
    from wxb.viz import plot_confusion_matrix  # matplotlib loads only when a run ends

    return plot_confusion_matrix(matrix, names, path, title=title)
