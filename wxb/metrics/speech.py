"""Speech recognition errors: word error rate (WER) and character error rate (CER), counted by
``jiwer`` (the field's scorer; its Levenshtein alignment runs in C++ through rapidfuzz).

Both are corpus-level, as jiwer computes them: the edits (substitutions S, deletions D,
insertions I) that turn every hypothesis into its reference, summed over the corpus, over the
reference units summed likewise, ``(S + D + I) / (S + D + H)`` with H the hits — not a mean of
per-utterance rates, which would let a one-word clip weigh as much as a long one. An empty
hypothesis is all deletions (rate 1 for it); insertions can lift the rate above 1. The
arguments go hypotheses first, references second, as every wxb metric takes them (jiwer's
own functions take the reference first).

What is compared:

- by default the texts as given, as ``jiwer.wer`` / ``jiwer.cer`` see them: words split on
  whitespace; characters after stripping the ends (the spaces between words count as
  characters, as in jiwer);
- ``normalize=True`` (English): Whisper's basic text normalisation first — lower-case; text in
  [brackets], <angle brackets> or (parentheses) removed (Whisper writes "[MUSIC]", "(laughs)");
  NFKC; every mark, symbol and punctuation character (Unicode categories M, S, P) replaced by
  a space; runs of whitespace made one space; the ends stripped. So "Hello, World!" and
  "hello world" match, and "don't" becomes "don t" on both sides alike. Numbers are left as
  they are: "9" and "nine" differ;
- ``language="zh"`` (CER): Chinese characters, after, in this order: NFKC (full-width Latin
  letters and digits become ASCII), OpenCC Traditional -> Simplified (``t2s``, so "這個" and
  "这个" match), lower-case, and removal of every space, punctuation mark and symbol (Unicode
  categories Z, P and S, and whitespace): "你好，世界！" and "你 好 世界" are both "你好世界".
  Latin letters and digits stay, one unit each. Chinese has no spaces between words, so its
  word error rate would count whole sentences; ``word_error_rate`` refuses ``language="zh"``.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Sequence
from typing import Literal

from wxb.errors import ConfigError, DataError
from wxb.metrics.summarization import is_chinese

Unit = Literal["word", "character"]
_BRACKETED = re.compile(r"[<\[][^>\]]*[>\]]|\([^)]+?\)")
_WHITESPACE = re.compile(r"\s+")


@dataclasses.dataclass(frozen=True)
class ErrorCounts:
    """The edits between hypotheses and references, summed over a corpus."""

    substitutions: int
    deletions: int
    insertions: int
    hits: int

    @property
    def reference_units(self) -> int:
        """Words (or characters) in the references: every one is a hit, a substitution or a
        deletion."""
        return self.hits + self.substitutions + self.deletions

    @property
    def rate(self) -> float:
        """(S + D + I) / reference units."""
        return (self.substitutions + self.deletions + self.insertions) / self.reference_units


def normalize_english(text: str) -> str:
    """Whisper's basic text normalisation (see the module docstring)."""
    text = _BRACKETED.sub("", text.lower())
    text = "".join(" " if unicodedata.category(c)[0] in "MSP" else c
                   for c in unicodedata.normalize("NFKC", text))
    return _WHITESPACE.sub(" ", text.lower()).strip()


def normalize_chinese(text: str) -> str:
    """Chinese text as CER compares it (see the module docstring): NFKC, Traditional ->
    Simplified, lower-case, no spaces, punctuation or symbols."""
    text = _simplified(unicodedata.normalize("NFKC", text)).lower()
    return "".join(c for c in text
                   if not c.isspace() and unicodedata.category(c)[0] not in "ZPS")


def error_counts(hypotheses: Sequence[str], references: Sequence[str], *, unit: Unit,
                 language: str | None = None, normalize: bool = False) -> ErrorCounts:
    """The corpus's substitutions, deletions, insertions and hits over words or characters,
    with the normalisation ``language`` / ``normalize`` choose (see the module docstring)."""
    import jiwer

    if unit not in ("word", "character"):
        raise ConfigError(f"unit must be 'word' or 'character', got {unit!r}")
    if len(hypotheses) != len(references):
        raise DataError(f"{len(hypotheses)} hypotheses but {len(references)} references; "
                        "give one reference transcript per hypothesis")
    if not references:
        raise DataError("no transcripts to score")
    for what, texts in (("hypothesis", hypotheses), ("reference", references)):
        bad = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
        if bad is not None:
            raise DataError(f"{what} {bad} is {type(texts[bad]).__name__}, not a string")
    chinese = is_chinese(language)
    if chinese and unit == "word":
        raise ConfigError("word error rate is not defined for Chinese (it has no spaces "
                          "between words); score it with character_error_rate(..., "
                          "language='zh')")
    clean = normalize_chinese if chinese else normalize_english if normalize else None
    if clean is not None:
        hypotheses = [clean(text) for text in hypotheses]
        references = [clean(text) for text in references]
    if not any(text.split() if unit == "word" else text.strip() for text in references):
        raise DataError("every reference transcript is empty" + (" after normalisation"
                        if clean else "") + f"; an error rate needs reference {unit}s")
    process = jiwer.process_words if unit == "word" else jiwer.process_characters
    out = process(list(references), list(hypotheses))
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, out.hits)


def word_error_rate(hypotheses: Sequence[str], references: Sequence[str], *,
                    normalize: bool = False, language: str | None = None) -> float:
    """Corpus WER, (S + D + I) / reference words, as ``jiwer.wer(references, hypotheses)``;
    ``normalize`` applies Whisper's English normalisation to both sides first."""
    return error_counts(hypotheses, references, unit="word", language=language,
                        normalize=normalize).rate


def character_error_rate(hypotheses: Sequence[str], references: Sequence[str], *,
                         language: str | None = None, normalize: bool = False) -> float:
    """Corpus CER, (S + D + I) / reference characters, as ``jiwer.cer(references,
    hypotheses)``; ``language="zh"`` compares Simplified Chinese characters without spaces or
    punctuation, ``normalize`` applies Whisper's English normalisation (see the module)."""
    return error_counts(hypotheses, references, unit="character", language=language,
                        normalize=normalize).rate


def _simplified(text: str) -> str:
    from wxb.tokenizers.normalize import Normalizer  # OpenCC loads once, shared (cached)

    return Normalizer("t2s")(text)
