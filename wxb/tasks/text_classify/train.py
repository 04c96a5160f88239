"""Fine-tuning an encoder for text classification, as a function of one config.

    table(s) -> texts, pairs, labels -> tokenizer -> model with a fresh classifier head
             -> what trains (full, head, bottom layers frozen, gradual unfreezing, layer decay)
             -> Trainer -> validation / test metrics, confusion matrices -> model/ + result.json

The config (a recipe with ``task: text-classify`` is one)::

    model:    {pretrained: DIR | hub id, init: pretrained | random,
               ignore_mismatched_sizes: false, <config fields to change, e.g. classifier_dropout>}
              or {type: bert | rnn, tokenizer: DIR | {kind: word, vocab_size: 20000, ...},
                  <fields of the family's config>}   (from scratch; a tokenizer given by its
                  settings is trained on the training texts)
    data:     {train: FILE, validation: FILE, test: FILE}
              or {path: FILE, validation_size: 0.1, test_size: 0.1, split_seed: 0}
              + text_column, text_pair_column, label_column, label_names | label_name_column,
                max_length: 128, truncation: true,
                train_size: N (a seeded subset of N training examples: learning from few labels)
    finetune: {strategy: full | head | pooler_head | bottom | gradual | lora | qlora, ...}
              (the keys of wxb.peft.strategy: freeze_layers, layer_decay, r, lora_alpha, ...)
    training: {<TrainingArguments fields>}
    max_time_seconds: 900     # stop training after this much wall time

``init: random`` keeps the checkpoint's configuration and tokenizer but starts from fresh
weights: the baseline that measures what pretraining brought. The model that is evaluated and
saved is the last one (choosing a checkpoint by its validation score and then reporting that
score would flatter it); the Trainer's best checkpoint stays on disk.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wxb.config import check_known_keys, check_section_keys, coerce
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
from wxb.models import registry
from wxb.models.base import CONFIG_NAME, PreTrainedModel, read_config_json
from wxb.peft.strategy import apply_strategy, check_finetune, save_finetuned
from wxb.tokenizers.base import Tokenizer
from wxb.tokenizers.load import load_tokenizer
from wxb.tokenizers.train import tokenizer_from_settings
from wxb.train.arguments import TrainingArguments
from wxb.train.from_config import (
    check_expected,
    config_sections,
    result_config,
    write_result,
)
from wxb.train.memory import TrainingMemory
from wxb.train.pretrain import TimeBudget, run_summary
from wxb.train.trainer import Trainer

SECTIONS = ("model", "data", "finetune", "training")
OTHER_KEYS = ("name", "description", "task", "expected", "reported", "max_time_seconds")
MODEL_KEYS = ("pretrained", "init", "ignore_mismatched_sizes", "type", "tokenizer")
DATA_DEFAULTS = {"text_column": "text", "text_pair_column": None, "label_column": "label",
                 "label_names": None, "label_name_column": None, "max_length": 128,
                 "truncation": True, "validation_size": 0.1, "test_size": 0.1, "split_seed": 0,
                 "train_size": None}
DATA_FILES = ("train", "validation", "test", "path")
TRAINING_DEFAULTS = {"output_dir": "runs/finetune", "num_train_epochs": 3,
                     "learning_rate": 5e-5, "warmup_ratio": 0.1, "weight_decay": 0.01,
                     "per_device_train_batch_size": 32, "eval_strategy": "epoch",
                     "metric_for_best_model": "accuracy"}
# A model class's head (the end of its name) -> its name in messages, and what it is for.
HEADS = {"SequenceClassification": ("sequence-classification", "text classification"),
         "TokenClassification": ("token-classification", "tagging")}
SPLIT_METRICS = ("accuracy", "loss", "precision", "recall", "f1")
METRICS = tuple(f"{split}_{m}" for split in ("eval", "test") for m in SPLIT_METRICS)


def finetune(config: dict[str, Any], *, resume: bool | str = False,
             log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fine-tune the configured classifier and return the contents of ``result.json``.

    ``resume`` continues the run in ``training.output_dir`` (True) or from a given run or
    checkpoint folder. ``log`` receives one line per stage.
    """
    start = time.perf_counter()
    log = log or (lambda line: None)
    config = copy.deepcopy(config)
    model_section, data, method, training = config_sections(config, SECTIONS, OTHER_KEYS)
    data = _check_data(data)
    method = check_finetune(method)
    expected = check_expected(config.get("expected"), METRICS)
    max_time = config.get("max_time_seconds")
    max_time = None if max_time is None else coerce("max_time_seconds", max_time, float)
    splits, labels = _read_splits(data)
    defaults = dict(TRAINING_DEFAULTS)
    if "validation" not in splits:  # nothing to evaluate on during training
        defaults.update(eval_strategy="no", metric_for_best_model="loss")
    args = TrainingArguments.from_dict({**defaults, **training})
    output_dir = Path(args.output_dir)
    log("data: " + ", ".join(f"{name} {len(s.labels):,}" for name, s in splits.items())
        + f"; {len(labels.values)} labels")
    model, tokenizer = build_classifier(model_section, labels, seed=args.seed,
                                        texts=splits["train"].texts)
    if tokenizer.pad_token_id is None:
        raise ConfigError("the tokenizer has no [PAD] token; batches of texts need one")
    encoded = {name: encode_examples(s, labels, tokenizer, max_length=data["max_length"],
                                     truncation=data["truncation"],
                                     source=data.get(name) or f"{data['path']} ({name} split)")
               for name, s in splits.items()}
    optimizers, callbacks = apply_strategy(model, method, args)
    log(f"model: {type(model).__name__}, {model.num_parameters():,} parameters, "
        f"{model.num_parameters(trainable_only=True):,} trainable ({method['strategy']})")
    budget = TimeBudget(max_time) if max_time is not None else None
    trainer = Trainer(model, args, train_dataset=encoded["train"],
                      eval_dataset=encoded.get("validation"),
                      data_collator=PaddingCollator(tokenizer.pad_token_id),
                      compute_metrics=classification_report, optimizers=optimizers,
                      callbacks=[*callbacks, *([budget] if budget else [])])
    memory = TrainingMemory()
    memory.start(model)
    output = trainer.train(resume_from_checkpoint=resume)
    memory_mib = memory.report()  # before evaluation and saving, which take memory of their own

    metrics: dict[str, float] = {}
    plots = {}
    for name, prefix in (("validation", "eval"), ("test", "test")):
        if name not in encoded:
            continue
        scores, matrix = evaluate_split(trainer, encoded[name])
        metrics.update({f"{prefix}_{k}": v for k, v in scores.items()})
        plots[name] = str(_plot(matrix, labels.names, output_dir / f"confusion_{name}.png",
                                f"{config.get('name', 'fine-tuned')}: {name} split"))
        log(f"{name}: accuracy {scores['accuracy']:.4f}, macro F1 {scores['f1']:.4f}")
    saved = save_finetuned(model, tokenizer, output_dir / "model", method)

    result: dict[str, Any] = {
        **run_summary("text-classify", metrics, trainer, output, budget, start),
        "memory_mib": memory_mib,
        "examples": {name: len(s.labels) for name, s in splits.items()},
        "labels": labels.names,
        **saved,
        "confusion_matrices": plots,
        "config": result_config(config, expected, model=model_section, data=data,
                                finetune=method, training=args.to_dict(),
                                max_time_seconds=max_time),
    }
    return write_result(result, expected, metrics, output_dir)


# ----------------------------------------------------------------------------- the sections


def _check_data(section: dict[str, Any]) -> dict[str, Any]:
    check_section_keys("data", section, (*DATA_FILES, *DATA_DEFAULTS))
    if ("path" in section) == ("train" in section):
        raise ConfigError("data: give either train (with validation and/or test files) or "
                          "path (one file, split by validation_size and test_size)")
    if "path" not in section:
        for key in ("validation_size", "test_size"):
            if key in section:
                raise ConfigError(f"data.{key} splits a single data.path; with data.train, "
                                  "give the validation and test files instead")
    section = {**DATA_DEFAULTS, **section}
    for key in ("max_length", "split_seed"):
        section[key] = coerce(f"data.{key}", section[key], int)
    if section["train_size"] is not None:
        section["train_size"] = coerce("data.train_size", section["train_size"], int)
        if section["train_size"] < 1:
            raise ConfigError(f"data.train_size must be at least 1, got {section['train_size']}")
    for key in ("validation_size", "test_size"):
        section[key] = coerce(f"data.{key}", section[key], float)
    section["truncation"] = coerce("data.truncation", section["truncation"], bool)
    if section["label_names"] is not None and section["label_name_column"] is not None:
        raise ConfigError("data: give label_names or label_name_column, not both")
    return section


# ----------------------------------------------------------------------------- the pieces


def _read_splits(data: dict[str, Any]) -> tuple[dict[str, TextExamples], LabelSet]:
    """The train / validation / test examples and the label set (from the training split)."""
    columns = {k: data[k] for k in ("text_column", "text_pair_column", "label_column")}
    name_column = data["label_name_column"]

    def read(path: str) -> tuple[TextExamples, dict[str, str]]:
        rows = read_rows(path)
        examples = text_examples(rows, path, **columns)
        if name_column is None:
            return examples, {}
        if name_column not in rows[0]:
            raise DataError(f"{path} has no column {name_column!r} (label_name_column); its "
                            f"columns are: {', '.join(rows[0])}")
        return examples, {str(r[columns["label_column"]]).strip(): str(r[name_column])
                          for r in rows}

    if "path" in data:
        whole, names = read(data["path"])
        splits = _split(whole, data)
    else:
        splits, names = {}, {}
        for name in ("train", "validation", "test"):
            if data.get(name) is not None:
                splits[name], found = read(data[name])
                names.update(found)
    size = data["train_size"]
    if size is not None:
        train = splits["train"]
        if size > len(train.labels):
            raise ConfigError(f"data.train_size {size} is more than the "
                              f"{len(train.labels)} training examples")
        order = torch.randperm(len(train.labels), generator=torch.Generator().manual_seed(
            data["split_seed"]))[:size].tolist()
        splits["train"] = _take(train, order)
    given = data["label_names"]
    if given is not None:
        if not isinstance(given, dict):
            raise ConfigError(f"data.label_names maps label values to names, e.g. "
                              f"{{0: negative, 1: positive}}; got {given!r}")
        names = {str(k): str(v) for k, v in given.items()}
    labels = LabelSet.from_values(splits["train"].labels, names)
    if len(labels.values) < 2:
        raise DataError(f"the training data has a single label ({labels.values[0]!r}); a "
                        "classifier needs at least two")
    return splits, labels


def _split(whole: TextExamples, data: dict[str, Any]) -> dict[str, TextExamples]:
    """A fixed, seeded split of one table into train / validation / test."""
    index = DictDataset(i=torch.arange(len(whole.texts)))
    parts: dict[str, list[int]] = {}
    rest = index
    for name in ("test", "validation"):
        size = data[f"{name}_size"]
        if size == 0:
            continue
        # The fraction is of the whole table, whatever was taken out before.
        share = size * len(index) / len(rest)
        rest, held = train_test_split(rest, share, data["split_seed"])
        parts[name] = held.tensors["i"].tolist()
    parts = {"train": rest.tensors["i"].tolist(), **parts}
    return {name: _take(whole, ids) for name, ids in parts.items()}


def _take(examples: TextExamples, ids: list[int]) -> TextExamples:
    return TextExamples([examples.texts[i] for i in ids],
                        [examples.pairs[i] for i in ids] if examples.pairs else None,
                        [examples.labels[i] for i in ids])


def build_classifier(section: dict[str, Any], labels: LabelSet, *, seed: int,
                     texts: list[str] | None = None) -> tuple[PreTrainedModel, Tokenizer]:
    """The sequence classifier and its tokenizer: a checkpoint under a new head sized to the
    labels, the same architecture with fresh weights (``init: random``), or a model of a
    ``type`` built from scratch on a given tokenizer or one trained on ``texts``."""
    from wxb.hub import load_pretrained, resolve

    known = {k: section[k] for k in MODEL_KEYS if k in section}
    fields = {k: v for k, v in section.items() if k not in MODEL_KEYS}
    label_fields = {"num_labels": len(labels.values), "id2label": labels.id2label}
    torch.manual_seed(seed)  # the new head (or the whole random model) depends on the seed
    if "pretrained" in known:
        if "type" in known:
            raise ConfigError("model: give pretrained (a checkpoint) or type (from scratch), "
                              "not both")
        folder = resolve(known["pretrained"])
        tokenizer = load_tokenizer(known.get("tokenizer", folder))
        values = read_config_json(folder / CONFIG_NAME)
        model_type = values.get("model_type")
        cls = registry.model_class(model_type, head_architecture(model_type))
        init = known.get("init", "pretrained")
        if init == "pretrained":
            model = load_pretrained(cls, folder, **label_fields, **fields,
                                    ignore_mismatched_sizes=coerce(
                                        "model.ignore_mismatched_sizes",
                                        known.get("ignore_mismatched_sizes", False), bool))
        elif init == "random":
            model = cls(cls.config_class.from_dict({**values, **label_fields, **fields}))
        else:
            raise ConfigError(f"model.init must be pretrained or random, got {init!r}")
        return model, tokenizer
    if "type" not in known or "tokenizer" not in known:
        raise ConfigError("model needs pretrained (a checkpoint folder or hub id), or type "
                          "and tokenizer (a tokenizer folder) to build one from scratch")
    model_type = known["type"]
    cls = registry.model_class(model_type, head_architecture(model_type))
    tokenizer = tokenizer_from_settings(known["tokenizer"], texts or [])
    check_known_keys(cls.config_class, fields, f"{model_type} config field")
    values = {"vocab_size": tokenizer.vocab_size, "pad_token_id": tokenizer.pad_token_id,
              **label_fields, **fields}
    return cls(cls.config_class.from_dict(values, strict=True)), tokenizer


def head_architecture(model_type: str, head: str = "SequenceClassification") -> str:
    """The family's class name with that head: BertForSequenceClassification,
    RNNForTokenClassification (``head="TokenClassification"``)."""
    suffix = f"For{head}"
    found = [name for name in registry.FAMILIES.get(model_type, (None, None, ()))[2]
             if name.endswith(suffix)]
    if not found:
        having = [t for t, (_, _, names) in registry.FAMILIES.items()
                  if any(n.endswith(suffix) for n in names)]
        what, task = HEADS[head]
        raise ConfigError(f"model type {model_type!r} has no {what} head; {task} works with: "
                          f"{', '.join(having)}")
    return found[0]


def evaluate_split(trainer: Trainer, dataset: EncodedTexts) -> tuple[dict[str, float],
                                                                      np.ndarray]:
    """Loss, accuracy, macro P/R/F1 and the confusion matrix of the model on ``dataset``."""
    predictions: list[np.ndarray] = []

    def keep(eval_pred) -> dict[str, float]:
        predictions.append(eval_pred.predictions.argmax(-1))
        return classification_report(eval_pred)

    scores = evaluate_with(trainer, dataset, keep)
    num_labels = trainer.model.config.num_labels
    matrix = confusion_matrix(predictions[0], np.array(dataset.labels), num_labels)
    return scores, matrix


def evaluate_with(trainer: Trainer, dataset: Any,
                  compute_metrics: Callable[[Any], dict[str, float]]) -> dict[str, float]:
    """``trainer.evaluate(dataset)`` with other metrics than the Trainer's own (those of
    another split); the names without their ``eval_`` prefix."""
    metric_fn, trainer.compute_metrics = trainer.compute_metrics, compute_metrics
    try:
        scores = trainer.evaluate(dataset)
    finally:
        trainer.compute_metrics = metric_fn
    return {k.removeprefix("eval_"): v for k, v in scores.items()}


def _plot(matrix: np.ndarray, names: list[str], path: Path, title: str) -> Path:
    from wxb.viz import plot_confusion_matrix  # matplotlib loads only when a run ends

    return plot_confusion_matrix(matrix, names, path, title=title)
