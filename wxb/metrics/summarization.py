"""Summary quality: ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum F1 through Google's
``rouge-score`` (the package the field's papers and Hugging Face's ``evaluate`` use), and the
lead baseline every summarizer is measured against.

English is scored as ``rouge-score`` scores it: lower-cased, split on anything that is not a
letter or digit, Porter-stemmed. Its tokenizer throws away every character outside a-z0-9, so
a Chinese summary would score 0 against anything; Chinese is scored over characters instead
(each CJK character one token, runs of Latin letters and digits one token each), as LCSTS
papers do, with no stemming. ROUGE-Lsum is the summary-level LCS over sentences, which
``rouge-score`` reads from newlines: the sentences are split first (as Hugging Face's
``run_summarization.py`` does with nltk) on . ! ? 。！？ followed by a space or the end.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from wxb.errors import DataError

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
# A sentence ends at . ! ? (followed by whitespace) or at a full-width 。！？ (Chinese needs no
# space after it); the mark stays with its sentence.
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])\s*")
CHINESE_TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[a-z0-9]+")


def is_chinese(language: str | None) -> bool:
    return (language or "").split("-")[0].lower() == "zh"


def sentences(text: str) -> list[str]:
    """``text`` cut into sentences (see the module's docstring for where they end)."""
    return [s for s in (part.strip() for part in SENTENCE_END.split(text.strip())) if s]


def lead(text: str, n: int = 3) -> str:
    """The lead-``n`` baseline: the document's first ``n`` sentences, as its summary."""
    return " ".join(sentences(text)[:n])


class CharacterTokenizer:
    """``rouge-score``'s tokenizer interface for Chinese: one token per CJK character, one per
    run of Latin letters or digits (lower-cased); punctuation and spaces dropped."""

    def tokenize(self, text: str) -> list[str]:
        return CHINESE_TOKEN.findall(text.lower())


def rouge(hypotheses: Sequence[str], references: Sequence[str], *,
          language: str | None = None) -> dict[str, float]:
    """The mean over pairs of each ROUGE F1 (0-100): ``rouge1``, ``rouge2``, ``rougeL``,
    ``rougeLsum``; ``language`` ``zh`` scores characters, anything else English words."""
    from rouge_score import rouge_scorer

    if len(hypotheses) != len(references):
        raise DataError(f"{len(hypotheses)} summaries but {len(references)} references; give "
                        "one reference per summary")
    if not hypotheses:
        raise DataError("no summaries to score")
    chinese = is_chinese(language)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=not chinese,
                                      tokenizer=CharacterTokenizer() if chinese else None)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for hypothesis, reference in zip(hypotheses, references, strict=True):
        # rougeLsum reads sentences from newlines; the other types ignore them.
        scores = scorer.score("\n".join(sentences(reference)), "\n".join(sentences(hypothesis)))
        for kind in ROUGE_TYPES:
            totals[kind] += scores[kind].fmeasure
    return {kind: 100 * total / len(hypotheses) for kind, total in totals.items()}


def rouge_tokenization(language: str | None) -> str:
    """How ``rouge`` counted tokens for ``language``, in words, for a result file."""
    if is_chinese(language):
        return "characters (each CJK character a token, no stemming)"
    return "rouge-score's English words (lower-cased, a-z0-9 only, Porter stemming)"
