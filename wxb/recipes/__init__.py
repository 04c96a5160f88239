"""YAML recipes reproducing the course's experiments, each with the result it is expected to reach.

A recipe is a config of one task plus ``name``, ``description``, ``task``, ``expected: {metric,
at_least | at_most}`` and ``reported`` (what a measured run reached, and where). ``task`` names
an entry of the task registry (``wxb.tasks``; ``image-classify`` when absent) and says what
trains it; ``wxb recipe list`` shows each recipe with its task.

``run_recipe(name, data_dir)`` runs one and writes ``runs/<name>/result.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from wxb.config import lay_over, merge_config, parse_config
from wxb.errors import ConfigError, DataError

# What `wxb train` trains when given no config.
DEFAULT_TRAIN_RECIPE = "digits-cnn"
# A recipe that names no task trains an image / feature classifier, as the first ones did.
DEFAULT_TASK = "image-classify"
# The data fields that name files (relative to the data folder).
DATA_FILES = ("path", "corpus", "train", "validation", "test")
EARLIER_FILES = ("vectors", "elmo")  # model keys that may name what an earlier run wrote

def recipe_names() -> list[str]:
    """The names of the bundled recipes, sorted."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name.removesuffix(".yaml") for f in files if f.name.endswith(".yaml"))


def load_recipe(name: str) -> dict[str, Any]:
    """The bundled recipe ``name`` as a config dict.

    A recipe that ``extends`` another is that one's sections with its own laid over them (a
    GRU variant of an LSTM recipe names only ``model: {cell: gru}``; one with another model
    ``type`` gives its whole model section); its name, description, promise and reported
    numbers are its own.
    """
    if name not in recipe_names():
        raise ConfigError(f"unknown recipe {name!r}; the recipes are: {', '.join(recipe_names())}")
    resource = resources.files(__name__) / f"{name}.yaml"
    recipe = parse_config(resource.read_text(encoding="utf-8"), f"recipe {name}")
    base_name = recipe.pop("extends", None)
    if base_name is None:
        return recipe
    if base_name == name:
        raise ConfigError(f"recipe {name} extends itself")
    base = load_recipe(base_name)
    base_type = (base.get("model") or {}).get("type")
    if (recipe.get("model") or {}).get("type", base_type) != base_type:
        base.pop("model")  # another family's fields would not fit: the recipe's model alone
    own = ("name", "description", "expected", "reported")
    return merge_config({k: v for k, v in base.items() if k not in own}, recipe)


def default_train_config() -> dict[str, Any]:
    """The model, data and training sections of the default recipe, without its name and promise.

    Flags laid over it (another model, fewer steps) would make the recipe's name and expected
    result untrue, so only the sections are kept.
    """
    recipe = load_recipe(DEFAULT_TRAIN_RECIPE)
    return {k: v for k, v in recipe.items() if k not in ("name", "description", "expected",
                                                           "reported")}


def run_recipe(name: str, data_dir: str | Path | None = None,
               output_dir: str | Path | None = None, overrides: dict[str, Any] | None = None,
               *, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the recipe ``name`` and return its result (also written to ``result.json``).

    ``data_dir`` is the folder that the recipe's relative data paths start from (the shared
    data folder, e.g. ``../shared/data``); ``output_dir`` defaults to ``runs/<name>``;
    ``overrides`` is a nested mapping laid over the recipe, e.g. ``{"training": {"max_steps":
    20}}`` (a model of another ``type`` replaces the recipe's model section). The result
    carries ``expected`` (with the measured value and whether it was met) and the recipe's
    ``reported`` numbers.
    """
    from wxb.tasks import get_task

    recipe = lay_over(load_recipe(name), overrides or {})
    task = get_task(recipe.get("task", DEFAULT_TASK))
    output_dir = Path("runs") / name if output_dir is None else Path(output_dir)
    recipe["training"] = {**(recipe.get("training") or {}), "output_dir": str(output_dir)}
    for config in (recipe, recipe.get("pretrain"), recipe.get("finetune")):
        if isinstance(config, dict) and isinstance(config.get("data"), dict):
            config["data"] = _resolve_data(config["data"], data_dir, name)
    _check_earlier_run(recipe, name)
    return task.run(recipe, log=log)


def _check_earlier_run(recipe: dict[str, Any], name: str) -> None:
    """A model (or vectors, or a biLM) under ``runs/`` must exist, for the recipe and each
    variant of a comparison: say which recipe makes it (``runs/<recipe>/...``), if one does,
    or that ``--model`` (or the variant's ``model.pretrained``) picks another."""
    variants = recipe.get("variants") if isinstance(recipe.get("variants"), dict) else {}
    for variant, config in (("", recipe), *variants.items()):
        section = config.get("model") if isinstance(config, dict) else None
        section = section if isinstance(section, dict) else {}
        which = f" (variant {variant})" if variant else ""
        for key in EARLIER_FILES:  # vectors or a biLM that an earlier run wrote
            made = str(section.get(key, ""))
            if _earlier(made) and not Path(made).exists():
                raise ConfigError(f"recipe {name}{which} reads model.{key} {made}, which does "
                                  f"not exist yet: {_maker(made)}")
        model = str(section.get("pretrained", ""))
        if _earlier(model) and not Path(model).is_dir():
            other = (f"set variants.{variant}.model.pretrained to another checkpoint" if variant
                     else "give another checkpoint with --model")
            raise ConfigError(f"recipe {name}{which} fine-tunes {model}, which does not exist "
                              f"yet: {_maker(model)}, or {other}")


def _earlier(path: str) -> bool:
    """Whether ``path`` is inside a run folder (``runs/<name>/...``)."""
    parts = Path(path).parts
    return len(parts) > 1 and parts[0] == "runs"


def _maker(path: str) -> str:
    """What makes the run folder of ``path``: the recipe of its name, if there is one."""
    maker = Path(path).parts[1]
    return (f"run `wxb recipe run {maker}` first" if maker in recipe_names()
            else "make it first (no recipe makes it)")


def _resolve_data(data: dict[str, Any], data_dir: str | Path | None,
                  name: str) -> dict[str, Any]:
    """A data section with its file paths (and those of its ``documents`` or ``sets``) made
    to start from ``data_dir``."""
    data = {**data, **{key: _resolve(data[key], data_dir, name)
                       for key in DATA_FILES if data.get(key) is not None}}
    for key in ("documents", "sets"):
        if isinstance(data.get(key), list):
            data[key] = [{**doc, "path": _resolve(doc["path"], data_dir, name)}
                         if isinstance(doc, dict) and "path" in doc else doc
                         for doc in data[key]]
    return data


def _resolve(paths: str | list[str], data_dir: str | Path | None, name: str) -> str | list[str]:
    """Relative data paths start from ``data_dir``; say which folder to give when one is
    missing."""
    def one(path: str) -> str:
        full = Path(data_dir or ".") / path
        if not full.is_file():
            raise DataError(f"recipe {name}: data file {full} does not exist; pass the folder "
                              f"that holds {path} as data_dir (wxb recipe run {name} "
                              "--data-dir DIR)")
        return str(full)

    return [one(p) for p in paths] if isinstance(paths, list) else one(paths)
