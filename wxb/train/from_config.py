"""`wxb train` as a function: a YAML-shaped config in, a trained classifier and result.json out.

The config has three sections, each optional::

    model:    {type: cnn, <fields of that family's config>}         default: a cnn
    data:     {name: digits, test_size: 0.2, split_seed: 0}          default: built-in digits
              or {path: file.csv | file.npz, label_column: label, test_size: 0.2}
    training: {<TrainingArguments fields>}

A recipe adds ``name``, ``description``, ``task``, ``reported`` and ``expected: {metric:
eval_accuracy, at_least: 0.97}`` (or ``at_most`` for a loss).
Sizes the data determines (``input_size``, ``image_size``, ``num_channels``, ``num_labels``) are
filled in where the model section does not give them. The ``config`` stored in result.json is the
complete, resolved config, so passing it back in reruns the same experiment.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from wxb.config import check_known_keys, coerce
from wxb.data import DictDataset, load_digits, read_features, train_test_split
from wxb.errors import ConfigError, DataError
from wxb.io import atomic_write_json
from wxb.metrics import classification_metrics
from wxb.models.base import Config
from wxb.models.registry import config_class, model_class
from wxb.train.arguments import TrainingArguments
from wxb.train.checkpoint import load_weights
from wxb.train.seed import set_seed
from wxb.train.trainer import Trainer

SECTIONS = ("model", "data", "training")
RECIPE_KEYS = ("name", "description", "task", "expected", "reported")
DEFAULT_MODEL = "cnn"
BUILTIN_DATA = {"digits": load_digits}
DATA_DEFAULTS = {"test_size": 0.2, "split_seed": 0}
DATA_KEYS = ("name", "path", "label_column", *DATA_DEFAULTS)
# Unless told otherwise: evaluate on the held-out split every epoch, keep the most accurate model.
TRAINING_DEFAULTS = {"output_dir": "runs/train", "eval_strategy": "epoch",
                     "metric_for_best_model": "accuracy"}
# What the final evaluation reports (the Trainer's loss plus classification_metrics).
METRICS = ("eval_accuracy", "eval_loss")


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file; an empty file is the all-defaults config ``{}``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; give a YAML file with sections "
                          f"{', '.join(SECTIONS)} (or none, to train a cnn on digits)")
    return parse_config(path.read_text(encoding="utf-8"), str(path))


def parse_config(text: str, source: str) -> dict[str, Any]:
    """Parse YAML ``text`` (read from ``source``, named in errors) into a config mapping."""
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "cannot be parsed"
        raise ConfigError(f"config file {source} is not valid YAML{where}: {problem}") from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ConfigError(f"config file {source} must be a mapping with sections "
                          f"{', '.join(SECTIONS)}, got a {type(config).__name__}")
    return config


def with_overrides(config: dict[str, Any], *, model: str | None = None, data: str | None = None,
                   training: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of ``config`` with command-line choices laid over it.

    ``model`` names a model type; ``data`` a built-in dataset or a file path; ``training`` holds
    TrainingArguments fields.
    """
    config = copy.deepcopy(config)
    model_section, data_section, training_section = config_sections(config, SECTIONS, RECIPE_KEYS)
    if model is not None and model != model_section.get("type", DEFAULT_MODEL):
        # Fields of another family would not fit the new one: start from its defaults.
        config["model"] = {"type": model}
    if data is not None:
        kept = {k: v for k, v in data_section.items() if k not in ("name", "path")}
        if data in BUILTIN_DATA:
            kept.pop("label_column", None)
            config["data"] = {"name": data, **kept}
        else:
            config["data"] = {"path": data, **kept}
    if training:
        config["training"] = {**training_section, **training}
    return config


def train_from_config(config: dict[str, Any], *, resume: bool | str = False) -> dict[str, Any]:
    """Train the configured classifier, save the best model and return result.json's contents.

    ``resume`` is True to continue the run in ``training.output_dir`` from its last checkpoint,
    or the path of a run folder or checkpoint folder to continue from.

    Writes into ``output_dir``: the Trainer's checkpoints, log.jsonl and loss_curve.png, the best
    model as ``model/`` (config.json + model.safetensors) and ``result.json``.
    """
    start = time.perf_counter()
    model_section, data_section, training_section = config_sections(config, SECTIONS, RECIPE_KEYS)
    args = TrainingArguments.from_dict({**TRAINING_DEFAULTS, **training_section})
    model_type = model_section.get("type", DEFAULT_MODEL)
    if not isinstance(model_type, str):
        raise ConfigError(f"model.type must be a model type name such as 'cnn', got {model_type!r}")
    fields = {k: v for k, v in model_section.items() if k != "type"}
    config_cls, model_cls = config_class(model_type), model_class(model_type)
    if model_cls.main_input_name == "input_ids":
        raise ConfigError(f"model type {model_type!r} reads token ids; `wxb train` trains on "
                          "features and images (cnn, mlp): fine-tune text models with "
                          "`wxb finetune`, pretrain language models with a causal-lm recipe")
    check_known_keys(config_cls, fields, f"{model_type} config field")
    expected = check_expected(config.get("expected"), METRICS)
    data_section = _check_data(data_section)

    dataset = _load_data(data_section)
    sizes = _sizes_from_data(config_cls, fields, dataset)
    model_config = config_cls.from_dict({**sizes, **fields}, strict=True)
    train_set, test_set = train_test_split(dataset, data_section["test_size"],
                                           data_section["split_seed"])
    # The model's forward names its input (pixel_values, input_features, ...).
    train_set = train_set.rename("inputs", model_cls.main_input_name)
    test_set = test_set.rename("inputs", model_cls.main_input_name)
    # The initial weights depend on the seed alone, not on what ran before in this process.
    set_seed(args.seed)
    model = model_cls(model_config)
    trainer = Trainer(model, args, train_dataset=train_set, eval_dataset=test_set,
                      compute_metrics=classification_metrics)
    trainer.train(resume_from_checkpoint=resume)

    output_dir = Path(args.output_dir)
    best = trainer.state.best_checkpoint
    if best is not None and (output_dir / best).is_dir():
        load_weights(model, output_dir / best)
    metrics = trainer.evaluate()
    model_dir = model.save_pretrained(output_dir / "model")
    curve = output_dir / "loss_curve.png"
    result: dict[str, Any] = {
        "metrics": metrics,
        "steps": trainer.state.global_step,
        "epoch": trainer.state.epoch,
        "num_parameters": model.num_parameters(),
        "wall_time_s": round(time.perf_counter() - start, 2),
        "best_checkpoint": best,
        "model_dir": str(model_dir),
        "loss_curve": str(curve) if curve.is_file() else None,
        "config": result_config(config, expected,
                                model={"type": model_type, **_fields(model_config)},
                                data=data_section, training=args.to_dict()),
    }
    return write_result(result, expected, metrics, output_dir)


def config_sections(config: dict[str, Any], sections: tuple[str, ...],
                    other_keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """The named sections of ``config`` (empty when absent), refusing keys it does not know.

    ``other_keys`` are the top-level keys that are not sections (a recipe's name, its promise).
    """
    if not isinstance(config, dict):
        raise ConfigError(f"a config must be a mapping with sections {', '.join(sections)}")
    unknown = sorted(set(config) - set(sections) - set(other_keys))
    if unknown:
        raise ConfigError(f"unknown config section {unknown[0]!r}; the sections are: "
                          f"{', '.join(sections)} (recipes add {', '.join(other_keys)})")
    found = []
    for name in sections:
        section = config.get(name) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"config section {name!r} must be a mapping of fields, "
                              f"got {section!r}")
        found.append(section)
    return found


def _check_data(section: dict[str, Any]) -> dict[str, Any]:
    """The data section with defaults filled in and values converted to their types."""
    unknown = sorted(set(section) - set(DATA_KEYS))
    if unknown:
        raise ConfigError(f"unknown data field {unknown[0]!r}; known ones are: "
                          f"{', '.join(DATA_KEYS)}")
    if "name" in section and "path" in section:
        raise ConfigError("data: give either name (built-in data) or path (a .csv/.npz file), "
                          "not both")
    if "label_column" in section and "path" not in section:
        raise ConfigError("data.label_column applies to a data path (a .csv file) only")
    section = {**DATA_DEFAULTS, **section}
    if "path" not in section:
        section.setdefault("name", next(iter(BUILTIN_DATA)))
        if section["name"] not in BUILTIN_DATA:
            raise ConfigError(f"unknown built-in data {section['name']!r}; choose one of: "
                              f"{', '.join(BUILTIN_DATA)}, or give a path to a .csv/.npz file")
    for key in ("path", "label_column"):
        if key in section:
            section[key] = str(section[key])
    section["test_size"] = coerce("data.test_size", section["test_size"], float)
    section["split_seed"] = coerce("data.split_seed", section["split_seed"], int)
    return section


def _load_data(section: dict[str, Any]) -> DictDataset:
    if "path" in section:
        return read_features(section["path"], section.get("label_column", "label"))
    return BUILTIN_DATA[section["name"]]()


def _sizes_from_data(config_cls: type[Config], given: dict[str, Any],
                     dataset: DictDataset) -> dict[str, int]:
    """The config fields the data determines: input size, image shape and number of labels."""
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


# A data section's validation split: a file of its own, or a seeded share of data.train.
HELD_OUT_DEFAULTS = {"validation": None, "validation_size": 0.05, "split_seed": 0}


def check_held_out(section: dict[str, Any]) -> dict[str, Any]:
    """A data section with ``validation`` (a file) or ``validation_size`` (a share of
    ``data.train`` held out, with ``split_seed``) filled in and checked."""
    if section.get("validation") is not None and "validation_size" in section:
        raise ConfigError("data: give validation (a file) or validation_size (a share of "
                          "data.train held out), not both")
    section = {**HELD_OUT_DEFAULTS, **section}
    section["validation_size"] = coerce("data.validation_size", section["validation_size"],
                                        float)
    if section["validation"] is None and not 0 < section["validation_size"] < 1:
        raise ConfigError("data.validation_size must be between 0 and 1 (the scores before and "
                          "after training need held-out examples), got "
                          f"{section['validation_size']}")
    section["split_seed"] = coerce("data.split_seed", section["split_seed"], int)
    return section


def read_splits(data: dict[str, Any], read: Callable[[str], list]) -> dict[str, list]:
    """The ``train`` and ``validation`` examples that ``read(path)`` gives: from two files, or
    the validation ones held out of data.train (a data section checked by ``check_held_out``)."""
    train = read(data["train"])
    if data["validation"] is not None:
        return {"train": train, "validation": read(data["validation"])}
    rest, held = train_test_split(DictDataset(i=torch.arange(len(train))),
                                  data["validation_size"], data["split_seed"])
    return {"train": [train[i] for i in rest.tensors["i"].tolist()],
            "validation": [train[i] for i in held.tensors["i"].tolist()]}


def check_expected(expected: Any, metrics: tuple[str, ...]) -> dict[str, Any] | None:
    """A recipe's promised result: ``{metric: eval_accuracy, at_least: 0.97}`` for a score, or
    ``{metric: eval_loss, at_most: 1.5}`` for a loss; ``metrics`` are the ones the run reports."""
    if expected is None:
        return None
    bounds = ("at_least", "at_most")
    if (not isinstance(expected, dict) or "metric" not in expected
            or len(set(expected) & set(bounds)) != 1 or set(expected) - {"metric", *bounds}):
        raise ConfigError(f"expected must be a mapping with metric and one of at_least, at_most, "
                          f"e.g. {{metric: eval_accuracy, at_least: 0.95}}; got {expected!r}")
    if expected["metric"] not in metrics:
        raise ConfigError(f"expected.metric {expected['metric']!r} is not reported; choose one "
                          f"of: {', '.join(metrics)}")
    bound = next(b for b in bounds if b in expected)
    return {"metric": expected["metric"],
            bound: coerce(f"expected.{bound}", expected[bound], float)}


def judge_expected(expected: dict[str, Any], metrics: dict[str, float]) -> dict[str, Any]:
    """``expected`` (from ``check_expected``) with the measured ``value`` and whether it was met."""
    value = metrics[expected["metric"]]
    met = value >= expected["at_least"] if "at_least" in expected else value <= expected["at_most"]
    return {**expected, "value": value, "met": bool(met)}


def result_config(config: dict[str, Any], expected: dict[str, Any] | None,
                  **sections: Any) -> dict[str, Any]:
    """The ``config`` entry of a result.json: the recipe's name, description, task and reported
    numbers where ``config`` has them, the resolved ``sections``, and the goal."""
    return {**{k: config[k] for k in RECIPE_KEYS if k in config and k != "expected"},
            **sections, **({"expected": expected} if expected else {})}


def write_result(result: dict[str, Any], expected: dict[str, Any] | None,
                 metrics: dict[str, float], output_dir: str | Path) -> dict[str, Any]:
    """Judge the goal on ``metrics`` into ``result``, write ``output_dir/result.json``
    atomically, and return ``result``."""
    if expected:
        result["expected"] = judge_expected(expected, metrics)
    atomic_write_json(Path(output_dir) / "result.json", result)
    return result


def _fields(model_config: Config) -> dict[str, Any]:
    return {k: v for k, v in model_config.to_dict().items() if k != "model_type"}
