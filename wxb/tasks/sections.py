"""Configuration sections as typed dataclasses, validated by one mechanism.

A task's config is a mapping of sections (``data``, ``model``, ``training``, ...). Each section
is a dataclass derived from ``Section``: its fields are the keys it takes, their annotations
the types, their defaults the defaults. ``Section.from_dict(values, "data")`` refuses an
unknown key with one line naming the section, the key and the valid keys, and converts every
value to its annotated type (``"3e-4"`` from YAML becomes a float) or refuses it with one line
naming the field, the value and the type expected. Checks that involve several fields go in
``check()``.

A section that also carries the fields of a model family (``model: {type: rnn, hidden_size:
128}``) declares ``extra_fields = True``: the keys it does not declare are kept, in order, in
``extra`` and checked later against the family's own config class.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypeVar

from wxb.config import coerce_fields
from wxb.errors import ConfigError

S = TypeVar("S", bound="Section")


@dataclasses.dataclass
class Section:
    """Base of every config section (see the module docstring)."""

    # Keys outside the declared fields are kept in ``extra`` (a model family's config fields).
    extra_fields: ClassVar[bool] = False

    @classmethod
    def from_dict(cls: type[S], values: Any, name: str) -> S:
        """The section ``name`` of a config from its mapping (None or absent: all defaults)."""
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ConfigError(f"config section {name!r} must be a mapping of fields, "
                              f"got {values!r}")
        known = [f.name for f in dataclasses.fields(cls) if f.init]
        unknown = [k for k in values if k not in known]
        if unknown and not cls.extra_fields:
            raise ConfigError(f"unknown {name} field {sorted(unknown)[0]!r}; known ones are: "
                              f"{', '.join(known)}")
        section = cls(**{k: v for k, v in values.items() if k in known})
        coerce_fields(section, owner=name)
        section.extra = {k: values[k] for k in unknown}
        section.section_name, section.keys = name, tuple(values)  # the keys the config gave
        section.check()
        return section

    def check(self) -> None:
        """Checks across fields, after each field has its type; raise ConfigError."""

    def to_dict(self) -> dict[str, Any]:
        """The section as it would be written back (defaults filled in; ``extra`` last)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        return {**values, **getattr(self, "extra", {})}

    def given(self, key: str) -> bool:
        """Whether ``key`` has a value (is not None)."""
        return getattr(self, key) is not None

    def fail(self, message: str) -> ConfigError:
        """A ConfigError about this section: ``raise self.fail("give x or y")``."""
        return ConfigError(f"{getattr(self, 'section_name', type(self).__name__)}: {message}")


def choose(name: str, value: Any, choices: tuple[str, ...], what: str = "") -> str:
    """``value`` if it is one of ``choices``, else one line naming the field and the choices."""
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; {what or 'choose one of'}: "
                          f"{', '.join(choices)}")
    return value


def at_least(name: str, value: float | int | None, low: float | int) -> None:
    """Refuse a ``value`` below ``low`` (None passes: the field is unset)."""
    if value is not None and value < low:
        raise ConfigError(f"{name} must be at least {low}, got {value}")


def fraction(name: str, value: float, *, open_low: bool = False) -> None:
    """Refuse a share outside [0, 1) (or (0, 1) with ``open_low``)."""
    if not (0 < value < 1 if open_low else 0 <= value < 1):
        raise ConfigError(f"{name} must be between 0 and 1, got {value}")
