"""YAML recipes reproducing the course's experiments, each with the result it is expected to reach.

A recipe is a `wxb train` config (model, data, training) plus ``name``, ``description`` and
``expected: {metric, at_least}``; ``train_from_config(load_recipe(name))`` runs it.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from wxb.errors import ConfigError
from wxb.train.from_config import SECTIONS, parse_config

# What `wxb train` trains when given no config.
DEFAULT_TRAIN_RECIPE = "digits-cnn"


def recipe_names() -> list[str]:
    """The names of the bundled recipes, sorted."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name.removesuffix(".yaml") for f in files if f.name.endswith(".yaml"))


def load_recipe(name: str) -> dict[str, Any]:
    """The bundled recipe ``name`` as a config dict."""
    if name not in recipe_names():
        raise ConfigError(f"unknown recipe {name!r}; the recipes are: {', '.join(recipe_names())}")
    resource = resources.files(__name__) / f"{name}.yaml"
    return parse_config(resource.read_text(encoding="utf-8"), f"recipe {name}")


def default_train_config() -> dict[str, Any]:
    """The model, data and training sections of the default recipe, without its name and promise.

    Flags laid over it (another model, fewer steps) would make the recipe's name and expected
    result untrue, so only the sections are kept.
    """
    recipe = load_recipe(DEFAULT_TRAIN_RECIPE)
    return {section: recipe[section] for section in SECTIONS if section in recipe}
