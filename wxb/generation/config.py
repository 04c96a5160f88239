"""GenerationConfig: every decoding knob, with the names and defaults of transformers'.

A knob that transformers also has means the same thing here, so a setting copied from a Hugging
Face example gives the same tokens. Two knobs are the course's own: ``bad_token_ids`` (never
generate these ids, e.g. [UNK] and [PAD]) and ``no_repeat_window`` (never repeat a token that
appeared among the last N generated ones).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from wxb.config import check_known_keys, coerce
from wxb.errors import ConfigError


@dataclass
class GenerationConfig:
    """How ``generate`` decodes. Defaults are transformers' global generation defaults.

    Length: ``max_new_tokens`` (preferred) or ``max_length`` (prompt included); with neither,
    20 new tokens. Strategy: greedy (default), sampling (``do_sample``), beam search
    (``num_beams`` > 1), beam sampling (both). Special token ids left None are read from
    ``model.config``.
    """

    # Length
    max_new_tokens: int | None = None
    max_length: int | None = None
    min_new_tokens: int | None = None
    # Strategy
    do_sample: bool = False
    num_beams: int = 1
    num_return_sequences: int = 1
    # Sampling (used only with do_sample)
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float | None = 1.0
    min_p: float | None = None
    # Penalties and bans
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    suppress_tokens: list[int] | None = None
    bad_token_ids: list[int] | None = None
    no_repeat_window: int = 0
    # Beam search
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    # Special tokens and stopping
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    stop_strings: list[str] | None = None
    # Reproducibility, prompt handling, output
    seed: int | None = None
    truncate_prompt: bool = False
    return_dict_in_generate: bool = False

    def __post_init__(self) -> None:
        self._coerce()
        self.validate()

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GenerationConfig:
        """Build from a dict (YAML, JSON, CLI flags); an unknown key is an error, not ignored."""
        check_known_keys(cls, values, "generation setting")
        return cls(**values)

    def updated(self, **changes: Any) -> GenerationConfig:
        """A copy with ``changes`` applied (and validated), as ``generate(**kwargs)`` does."""
        check_known_keys(type(self), changes, "generation setting")
        return dataclasses.replace(self, **changes)

    def _coerce(self) -> None:
        # Strings from YAML or flags ("0.7", "true") become numbers and booleans; the fields
        # that take two shapes (one stop string or a list, one eos id or a list, a boolean or
        # "never") are normalised by hand.
        if isinstance(self.stop_strings, str):
            self.stop_strings = [self.stop_strings]
        hints = typing.get_type_hints(type(self))
        special = {"eos_token_id", "early_stopping"}
        for f in dataclasses.fields(self):
            if f.name not in special:
                value = coerce(f.name, getattr(self, f.name), hints[f.name])
                setattr(self, f.name, value)
        if isinstance(self.eos_token_id, (list, tuple)):
            self.eos_token_id = [coerce("eos_token_id", i, int) for i in self.eos_token_id]
        elif self.eos_token_id is not None:
            self.eos_token_id = coerce("eos_token_id", self.eos_token_id, int)
        if self.early_stopping != "never":
            try:
                self.early_stopping = coerce("early_stopping", self.early_stopping, bool)
            except ConfigError:
                raise ConfigError(f"early_stopping must be true, false or 'never', "
                                  f"got {self.early_stopping!r}") from None

    def validate(self) -> None:
        """Raise ConfigError (one line naming the field) on a value transformers would refuse."""
        checks = [
            (self.max_new_tokens is None or self.max_new_tokens > 0,
             f"max_new_tokens must be at least 1, got {self.max_new_tokens}"),
            (self.max_length is None or self.max_length > 0,
             f"max_length must be at least 1, got {self.max_length}"),
            (self.min_new_tokens is None or self.min_new_tokens >= 0,
             f"min_new_tokens must be 0 or more, got {self.min_new_tokens}"),
            (self.temperature >= 0,
             f"temperature must be positive (e.g. 0.7), got {self.temperature}"),
            (not (self.do_sample and self.temperature == 0),
             "temperature=0 with do_sample=True divides by zero; for greedy decoding set "
             "do_sample=False"),
            (self.top_k is None or self.top_k >= 0,
             f"top_k must be 0 (off) or more, got {self.top_k}"),
            (self.top_p is None or 0 < self.top_p <= 1,
             f"top_p must be in (0, 1] (1 turns it off), got {self.top_p}"),
            (self.min_p is None or 0 <= self.min_p <= 1,
             f"min_p must be in [0, 1], got {self.min_p}"),
            (self.repetition_penalty > 0,
             f"repetition_penalty must be positive (1.0 is off), got {self.repetition_penalty}"),
            (self.no_repeat_ngram_size >= 0,
             f"no_repeat_ngram_size must be 0 (off) or more, got {self.no_repeat_ngram_size}"),
            (self.no_repeat_window >= 0,
             f"no_repeat_window must be 0 (off) or more, got {self.no_repeat_window}"),
            (self.num_beams >= 1, f"num_beams must be at least 1, got {self.num_beams}"),
            (self.num_return_sequences >= 1,
             f"num_return_sequences must be at least 1, got {self.num_return_sequences}"),
            (self.num_return_sequences == 1 or self.num_beams > 1 or self.do_sample,
             f"greedy decoding gives one sequence per prompt, not num_return_sequences="
             f"{self.num_return_sequences}; set do_sample=True or num_beams >= "
             f"{self.num_return_sequences}"),
            (self.num_beams == 1 or self.num_return_sequences <= self.num_beams,
             f"num_return_sequences ({self.num_return_sequences}) must not exceed num_beams "
             f"({self.num_beams})"),
            (all(s for s in self.stop_strings or []),
             f"stop_strings must be non-empty strings, got {self.stop_strings!r}"),
        ]
        for name in ("eos_token_id", "pad_token_id", "bos_token_id", "suppress_tokens",
                     "bad_token_ids"):
            value = getattr(self, name)
            ids = value if isinstance(value, list) else [] if value is None else [value]
            checks.append((all(i >= 0 for i in ids),
                           f"{name} must hold token ids (0 or more), got {value!r}"))
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
