"""Training an MLP or a CNN on images or feature vectors, as a function of one config (task
``image-classify``; what `wxb train` runs).

The config has three sections, each optional::

    model:    {type: cnn, <fields of that family's config>}         default: a cnn
    data:     {name: digits, test_size: 0.2, split_seed: 0}          default: built-in digits
              or {path: file.csv | file.npz, label_column: label, test_size: 0.2}
    training: {<TrainingArguments fields>}

A recipe adds ``name``, ``description``, ``reported`` and ``expected: {metric: eval_accuracy,
at_least: 0.97}``. Sizes the data determines (``input_size``, ``image_size``,
``num_channels``, ``num_labels``) are filled in where the model section does not give them.
The ``config`` stored in result.json is the complete, resolved config, so passing it back in
reruns the same experiment.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from wxb.config import check_known_keys
from wxb.data import DictDataset, load_digits, read_features, train_test_split
from wxb.errors import ConfigError, DataError
from wxb.models.base import Config
from wxb.models.registry import config_class, model_class
from wxb.tasks.run import Run
from wxb.tasks.sections import Section

DEFAULT_MODEL = "cnn"
BUILTIN_DATA = {"digits": load_digits}
# Unless told otherwise: evaluate on the held-out split every epoch, keep the most accurate model.
TRAINING_DEFAULTS = {"output_dir": "runs/train", "eval_strategy": "epoch",
                     "metric_for_best_model": "accuracy"}
# What the final evaluation reports (the Trainer's loss plus classification_metrics).
METRICS = ("eval_accuracy", "eval_loss")


@dataclasses.dataclass
class ModelSection(Section):
    """``type`` names the family; the other keys are fields of its config."""

    extra_fields = True
    type: str = DEFAULT_MODEL

    def check(self) -> None:
        cls = model_class(self.type)
        check_known_keys(cls.config_class, self.extra, f"{self.type} config field")
        if cls.main_input_name == "input_ids":
            raise ConfigError(f"model type {self.type!r} reads token ids; `wxb train` trains on "
                              "features and images (cnn, mlp): fine-tune text models with "
                              "`wxb finetune`, pretrain language models with a causal-lm recipe")


@dataclasses.dataclass
class DataSection(Section):
    """Built-in data by ``name``, or a .csv / .npz file by ``path``; a seeded test split."""

    name: str | None = None
    path: str | None = None
    label_column: str | None = None
    test_size: float = 0.2
    split_seed: int = 0

    def check(self) -> None:
        if self.given("name") and self.given("path"):
            raise self.fail("give either name (built-in data) or path (a .csv/.npz file), "
                            "not both")
        if self.given("label_column") and not self.given("path"):
            raise ConfigError("data.label_column applies to a data path (a .csv file) only")
        if not self.given("path"):
            self.name = self.name or next(iter(BUILTIN_DATA))
            if self.name not in BUILTIN_DATA:
                raise ConfigError(f"unknown built-in data {self.name!r}; choose one of: "
                                  f"{', '.join(BUILTIN_DATA)}, or give a path to a .csv/.npz "
                                  "file")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().to_dict().items() if v is not None}

    def load(self) -> DictDataset:
        if self.path is not None:
            return read_features(self.path, self.label_column or "label")
        return BUILTIN_DATA[self.name]()


SECTIONS = {"model": ModelSection, "data": DataSection}


def with_data(config: dict[str, Any], value: str) -> dict[str, Any]:
    """``config`` training on what a `--data` flag names: a built-in dataset, or a file (the
    data section's other settings kept)."""
    data = {k: v for k, v in (config.get("data") or {}).items() if k not in ("name", "path")}
    if value in BUILTIN_DATA:
        data.pop("label_column", None)
        data["name"] = value
    else:
        data["path"] = value
    return {**config, "data": data}


def train_classifier(config: dict[str, Any], *, resume: bool | str = False,
                     log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train the configured classifier, save the best model and return result.json's contents.

    ``resume`` is True to continue the run in ``training.output_dir`` from its last checkpoint,
    or the path of a run folder or checkpoint folder to continue from.

    Writes into ``output_dir``: the Trainer's checkpoints, log.jsonl and loss_curve.png, the best
    model as ``model/`` (config.json + model.safetensors) and ``result.json``.
    """
    from wxb.metrics import classification_metrics
    from wxb.train.checkpoint import load_weights
    from wxb.train.seed import set_seed

    run = Run("image-classify", config, SECTIONS, log=log)
    model_section, data = run["model"], run["data"]
    run.expect(METRICS)
    args = run.arguments(TRAINING_DEFAULTS)
    config_cls, model_cls = config_class(model_section.type), model_class(model_section.type)
    dataset = data.load()
    sizes = _sizes_from_data(config_cls, model_section.extra, dataset)
    model_config = config_cls.from_dict({**sizes, **model_section.extra}, strict=True)
    train_set, test_set = train_test_split(dataset, data.test_size, data.split_seed)
    # The model's forward names its input (pixel_values, input_features, ...).
    train_set = train_set.rename("inputs", model_cls.main_input_name)
    test_set = test_set.rename("inputs", model_cls.main_input_name)
    # The initial weights depend on the seed alone, not on what ran before in this process.
    set_seed(args.seed)
    model = model_cls(model_config)
    trainer = run.trainer(model, args, train_dataset=train_set, eval_dataset=test_set,
                          compute_metrics=classification_metrics)
    output = trainer.train(resume_from_checkpoint=resume)

    best = trainer.state.best_checkpoint
    if best is not None and (run.output_dir / best).is_dir():
        load_weights(model, run.output_dir / best)
    metrics = trainer.evaluate()
    model_dir = model.save_pretrained(run.output_dir / "model")
    fields = {k: v for k, v in model_config.to_dict().items() if k != "model_type"}
    return run.finish(metrics, trainer=trainer, output=output, model_dir=model_dir,
                      best_checkpoint=best,
                      config=run.resolved(model={"type": model_section.type, **fields}))


def _sizes_from_data(config_cls: type[Config], given: dict[str, Any],
                     dataset: DictDataset) -> dict[str, int]:
    """The config fields the data determines: input size, image shape and number of labels."""
    from wxb.config import coerce

    fields = {f.name for f in dataclasses.fields(config_cls)}
    inputs, labels = dataset.tensors["inputs"], dataset.tensors["labels"]
    if int(labels.min()) < 0:
        raise DataError(f"labels must be class ids 0, 1, 2, ...; found {int(labels.min())}")
    num_labels = int(labels.max()) + 1
    if "num_labels" in given and coerce("num_labels", given["num_labels"], int) < num_labels:
        raise ConfigError(f"model.num_labels is {given['num_labels']} but the data has labels "
                          f"up to {num_labels - 1}; set num_labels: {num_labels} or leave it out")
    sizes = {"num_labels": num_labels} if "num_labels" in fields else {}
    example = tuple(inputs.shape[1:])
    if "input_size" in fields:
        sizes["input_size"] = math.prod(example)
    if "image_size" in fields and not {"image_size", "num_channels"} <= set(given):
        sizes.update(_image_shape(example))
    return sizes


def _image_shape(example: tuple[int, ...]) -> dict[str, int]:
    if len(example) not in (2, 3):
        raise DataError(f"a cnn needs images, examples of shape (channels, height, width) or "
                        f"(height, width); this data has examples of shape {example}; use the "
                        "mlp for flat features, or an .npz file whose X holds images")
    channels, height, width = example if len(example) == 3 else (1, *example)
    if height != width:
        raise DataError(f"the cnn takes square images; this data's are {height}x{width}")
    return {"num_channels": channels, "image_size": height}
