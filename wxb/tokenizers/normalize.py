"""Chinese script conversion (Simplified <-> Traditional) as a tokenizer's first step, via OpenCC.

Only the OpenCC conversions that map every character to exactly one character are offered:
the output then lines up with the input position by position, so a tokenizer can cut either
text into pieces, read each piece's converted form at the same place, and give offsets that
point into the text the caller passed. (``s2twp`` / ``tw2sp`` are left out on purpose: their
phrase tables rewrite words to ones of another length, e.g. "B超" -> "超音波".)
"""

from __future__ import annotations

import re
from functools import cache

from wxb.errors import ConfigError, DataError

NORMALIZERS = {
    "s2t": "Simplified -> Traditional",
    "s2tw": "Simplified -> Traditional (Taiwan)",
    "t2s": "Traditional -> Simplified",
    "tw2s": "Traditional (Taiwan) -> Simplified",
}
TO_SIMPLIFIED = {"t2s", "tw2s"}

# OpenCC works on UTF-8 bytes in C++: it stops at a NUL and cannot take a lone surrogate (which
# has no UTF-8 form). Such characters are passed through untouched around the converted runs.
_UNCONVERTIBLE = re.compile(r"([\x00\ud800-\udfff]+)")


class Normalizer:
    """``Normalizer("s2tw")("这个软件")`` -> ``"這個軟件"``, the same length as its input.

    Args:
        name: one of ``NORMALIZERS`` (an OpenCC configuration name).
    """

    def __init__(self, name: str) -> None:
        if name not in NORMALIZERS:
            choices = ", ".join(f"{k!r} ({v})" for k, v in NORMALIZERS.items())
            raise ConfigError(f"unknown normalizer {name!r}; the normalizers are: {choices}, "
                              "or None for no normalization")
        self.name = name
        self.to_simplified = name in TO_SIMPLIFIED
        self._converter = _opencc(name)

    def __call__(self, text: str) -> str:
        # re.split with a group alternates: even items are runs to convert, odd items the
        # characters OpenCC cannot take.
        parts = _UNCONVERTIBLE.split(text)
        out = "".join(self._converter.convert(p) if i % 2 == 0 else p
                      for i, p in enumerate(parts))
        if len(out) != len(text):
            # Not the case with OpenCC's own dictionaries; a different OpenCC build could differ,
            # and the offsets would silently point at the wrong characters.
            raise DataError(f"OpenCC {self.name!r} changed the length of {text!r:.60} "
                            f"({len(text)} -> {len(out)} characters); this tokenizer needs a "
                            "conversion that keeps every character in place")
        return out


@cache
def _opencc(name: str):
    # Loading the dictionaries takes a while; every tokenizer with the same normalizer shares one.
    import opencc

    return opencc.OpenCC(name)
