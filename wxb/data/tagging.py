"""Tagged sentences for token classification (NER): the tag set, word ids, truncation counted.

    sentences = read_conll("conll2003/train.txt")             # words and BIO tags
    tags = tag_set(sentences, "conll2003/train.txt")          # O, B-LOC, I-LOC, B-MISC, ...
    dataset, cut = encode_sentences(sentences, tags, tokenizer, max_length=128)
    batch = PaddingCollator(tokenizer.pad_token_id)([dataset[0], dataset[1]])

The words are given, so the tokenizer only looks them up: it must give one id per word (a word
tokenizer that splits on whitespace; a subword tokenizer would need its labels aligned). Labels
are one per word; the collator pads them with -100, which the loss ignores. A model with a case
feature also gets ``case_ids``: what each word's capitals say, kept for words the vocabulary
lacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wxb.data.conll import TaggedSentence
from wxb.data.text import EncodedTexts, LabelSet
from wxb.errors import DataError

# A word's case classes (the case feature of Collobert et al. 2011): "the", "Paris", "EU" or
# "U.S.", "McDonald", "1996" or "3-1", and anything without letters or digits.
CASES = ("other", "lower", "title", "upper", "mixed", "digits")


def tag_set(sentences: Sequence[TaggedSentence], source: str | Path) -> LabelSet:
    """The BIO tags of ``sentences`` in a fixed order: O first, then by entity type, B before
    I (O, B-LOC, I-LOC, B-MISC, I-MISC, ...); a tag that is not BIO is an error."""
    found = {tag for s in sentences for tag in s.tags}
    for tag in sorted(found):
        if tag != "O" and tag[:2] not in ("B-", "I-"):
            raise DataError(f"{source} has the tag {tag!r}, which is not BIO (O, B-TYPE, "
                            "I-TYPE); entity F1 needs BIO tags (is data.tag_column the NER "
                            "column?)")
    values = sorted(found, key=lambda t: (t != "O", t[2:], t[:1]))
    return LabelSet(values, values)


def word_ids(tokenizer: Any, sentences: Sequence[Sequence[str]],
             source: str | Path = "the data") -> list[list[int]]:
    """The id of every word of every sentence (``[UNK]``'s for words outside the vocabulary),
    after the tokenizer's own normalization (lower-casing, ...)."""
    encoded = tokenizer([" ".join(words) for words in sentences],
                        add_special_tokens=False)["input_ids"]
    for number, (words, ids) in enumerate(zip(sentences, encoded, strict=True), start=1):
        if len(ids) != len(words):
            split = next((w for w in words if len(tokenizer.encode(
                w, add_special_tokens=False)) != 1), " ".join(words))
            raise DataError(f"{source}, sentence {number}: the tokenizer makes "
                            f"{len(ids)} tokens of {len(words)} words (e.g. of {split!r}); "
                            "a tagger needs one token per word: use a word tokenizer "
                            "(kind: word) without split_punctuation")
    return encoded


def word_case(word: str) -> int:
    """The index in ``CASES`` of the word's case class."""
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return CASES.index("digits" if any(c.isdigit() for c in word) else "other")
    if word.islower():
        return CASES.index("lower")
    if word.isupper():
        return CASES.index("upper" if len(letters) > 1 else "title")
    if word[0].isupper() and word[1:].islower():
        return CASES.index("title")
    return CASES.index("mixed")


def word_cases(sentences: Sequence[Sequence[str]]) -> list[list[int]]:
    """The case class of every word of every sentence (``case_ids``)."""
    return [[word_case(w) for w in words] for words in sentences]


def encode_sentences(sentences: Sequence[TaggedSentence], tags: LabelSet, tokenizer: Any, *,
                     max_length: int, cases: bool = False, source: str | Path = "the data"
                     ) -> tuple[EncodedTexts, int]:
    """Word ids (and with ``cases`` their case ids) and tag ids per sentence, each cut to
    ``max_length`` words, and how many sentences were cut. A tag the tag set lacks is an error
    naming ``source``."""
    words = [s.tokens for s in sentences]
    columns = {"input_ids": word_ids(tokenizer, words, source)}
    if cases:
        columns["case_ids"] = word_cases(words)
    labels = [tags.ids(s.tags, source) for s in sentences]
    truncated = sum(len(s.tokens) > max_length for s in sentences)
    return EncodedTexts({k: [row[:max_length] for row in v] for k, v in columns.items()},
                        [row[:max_length] for row in labels]), truncated
