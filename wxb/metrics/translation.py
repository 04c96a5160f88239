"""Translation quality: corpus BLEU and chrF through sacrebleu, the field's reference scorer."""

from __future__ import annotations

from collections.abc import Sequence

from wxb.errors import ConfigError, DataError

# sacrebleu tokenizes the text before counting n-grams: "13a" (mteval's) for languages written
# with spaces; Chinese has none, so "zh" splits it into characters (and keeps Latin words).
BLEU_TOKENIZE = {"zh": "zh", "ja": "ja-mecab", "ko": "ko-mecab"}


def bleu_tokenize(language: str | None) -> str:
    """The sacrebleu tokenizer for a target language code (``zh`` -> ``zh``, default 13a)."""
    return BLEU_TOKENIZE.get((language or "").split("-")[0].lower(), "13a")


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str | Sequence[str]], *,
                language: str | None = None) -> dict[str, float]:
    """``bleu`` (0-100) and ``chrf`` of the hypotheses, and the BLEU brevity penalty and
    n-gram precisions; ``language`` is the target's code. ``references`` holds one reference
    per hypothesis, or a list of them (any number each: Tatoeba has seven for "No way!")."""
    import sacrebleu

    if len(hypotheses) != len(references):
        raise DataError(f"{len(hypotheses)} hypotheses but {len(references)} references; "
                        "give one reference (or one list of references) per hypothesis")
    if not hypotheses:
        raise DataError("no sentences to score")
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    # sacrebleu reads references as streams, one per reference number; None where a
    # sentence has fewer.
    streams = [[r[i] if i < len(r) else None for r in refs]
               for i in range(max(len(r) for r in refs))]
    tokenize = bleu_tokenize(language)
    try:
        bleu = sacrebleu.corpus_bleu(list(hypotheses), streams, tokenize=tokenize)
    except (ImportError, ModuleNotFoundError, RuntimeError) as err:
        raise ConfigError(f"sacrebleu's {tokenize!r} tokenizer is not usable here ({err})") \
            from None
    chrf = sacrebleu.corpus_chrf(list(hypotheses), streams)
    return {"bleu": bleu.score, "chrf": chrf.score, "brevity_penalty": bleu.bp,
            **{f"precision_{n}": p for n, p in enumerate(bleu.precisions, start=1)}}
