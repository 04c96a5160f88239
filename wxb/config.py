"""Dataclass configs filled from dicts (YAML, JSON, flags) with typed conversion and clear errors.

Both the model configs and TrainingArguments use this, so ``learning_rate: "3e-4"`` from YAML
becomes a float and ``learning_rate: fast`` becomes one clear ``ConfigError``.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

from wxb.errors import ConfigError


def coerce_fields(obj: Any, owner: str = "") -> None:
    """Convert every field of the dataclass instance ``obj`` to its annotated type, in place."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        label = f"{owner}.{f.name}" if owner else f.name
        setattr(obj, f.name, coerce(label, getattr(obj, f.name), hints[f.name]))


def check_known_keys(cls: type, values: dict[str, Any], what: str) -> None:
    """Refuse keys that are not fields of ``cls`` (a typo should not be silently ignored)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {what} {unknown[0]!r}; known ones are: "
                          f"{', '.join(sorted(known))}")


def check_section_keys(name: str, section: dict[str, Any], known: tuple[str, ...]) -> None:
    """Refuse a key of config section ``name`` that is not in ``known``, listing those."""
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise ConfigError(f"unknown {name} field {unknown[0]!r}; known ones are: "
                          f"{', '.join(known)}")


def check_strings(name: str, value: Any) -> list[str]:
    """``value`` if it is a list of strings, else a ConfigError naming the field ``name``."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name} must be a list of strings, got {value!r}")
    return value


def coerce(name: str, value: Any, hint: Any) -> Any:
    """Convert ``value`` (often a string from YAML or a flag) to the type ``hint``."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        kinds = [a for a in args if a is not type(None)]
        if len(kinds) > 1:  # e.g. str | list[str]: the first kind the value fits
            for kind in kinds:
                try:
                    return coerce(name, value, kind)
                except ConfigError:
                    continue
            raise ConfigError(f"{name} must be {' or '.join(_kind_name(k) for k in kinds)}, "
                              f"got {value!r}")
        hint = kinds[0]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:  # a choice among names: strategy, format, kind, ...
        if value not in args:
            raise ConfigError(f"unknown {name} {value!r}; choose one of: "
                              f"{', '.join(map(str, args))}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if hint in (int, float):
        return _number(name, value, hint)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            of = f" of {_kind_name(args[0]).removeprefix('a ')}s" if args else ""
            raise ConfigError(f"{name} must be a list{of}, got {value!r}")
        return type(value)(coerce(name, v, args[0]) for v in value) if args else value
    if (hint is dict or origin is dict) and not isinstance(value, dict):
        raise ConfigError(f"{name} must be a mapping, got {value!r}")
    return value


def _kind_name(hint: Any) -> str:
    """How an error names a type: "a string", "a list", "a number", ..."""
    origin = typing.get_origin(hint) or hint
    if origin is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(hint))
    return {str: "a string", list: "a list", tuple: "a list", dict: "a mapping", int: "a number",
            float: "a number", bool: "true or false"}.get(origin, getattr(origin, "__name__",
                                                                          str(hint)))


def _number(name: str, value: Any, kind: type) -> int | float:
    example = "3e-4" if kind is float else "100"
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number (e.g. {example}), got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number (e.g. {example}), got {value!r}") from None
    if kind is int:
        if not number.is_integer():
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
        return int(number)
    return number


def merge_config(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it, mapping by mapping (neither is changed)."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def lay_over(config: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """``config`` with command-line ``flags`` laid over it: ``{section: {key: value}}`` or
    ``{key: value}`` at the top level; a value of None is a flag not given. A model ``type``
    other than the config's replaces the whole model section, since the fields of another
    family would not fit the new one."""
    given: dict[str, Any] = {}
    for key, value in flags.items():
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if v is not None}
            if value:
                given[key] = value
        elif value is not None:
            given[key] = value
    merged = copy.deepcopy(config)
    new_type = (given.get("model") or {}).get("type")
    if new_type is not None and new_type != (merged.get("model") or {}).get("type"):
        merged.pop("model", None)
    return merge_config(merged, given)


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file; an empty file is the all-defaults config ``{}``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; give a YAML file of sections "
                          "(model, data, training, ...)")
    return parse_config(path.read_text(encoding="utf-8"), str(path))


def parse_config(text: str, source: str) -> dict[str, Any]:
    """Parse YAML ``text`` (read from ``source``, named in errors) into a config mapping."""
    import yaml

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
        raise ConfigError(f"config file {source} must be a mapping of sections, got a "
                          f"{type(config).__name__}")
    return config
