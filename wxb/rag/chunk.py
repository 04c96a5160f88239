"""Cutting documents into passages (chunks) that keep where they came from.

A document is first cut into *units*, then ``size`` consecutive units make a chunk, and each
chunk starts ``size - overlap`` units after the previous one (so ``overlap`` units are shared)::

    tokens      the tokens of a tokenizer (the embedder's, so a chunk fits its length limit)
    sentences   sentences: ended by . ! ? followed by a space (or the end), by the Chinese and
                Japanese ends 。！？ (and ! ? …) with no space needed, closing quotes and
                brackets (” ’ 」 』 ） ) ] " ') kept with their sentence, or by a blank line
    paragraphs  blocks of text between blank lines

A chunk spans from its first unit's start to its last unit's end, so whatever lies between the
units (spaces, line breaks) is kept and ``chunk.text == document.text[chunk.start:chunk.end]``;
the whitespace around a unit is never part of it. Chunk ids are ``<document id>#<n>``, n from 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from wxb.errors import ConfigError
from wxb.rag.documents import Document

# The size and overlap a chunk has by default, in units of each kind.
DEFAULTS: dict[str, tuple[int, int]] = {"tokens": (128, 32), "sentences": (4, 1),
                                        "paragraphs": (1, 0)}

_CLOSERS = "”’」』）)\\]\"'"
SENTENCE_END = re.compile(
    rf"(?:[。！？!?]+|…+)[{_CLOSERS}]*"        # CJK ends (and ! ? …): no space needed after
    rf"|\.+[{_CLOSERS}]*(?=\s|$)"              # a full stop ends a sentence before a space
    r"|\n[^\S\n]*\n")                          # a blank line
PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n")


@dataclass(frozen=True)
class Chunk:
    """A passage of a document: ``text == source_text[start:end]`` (character offsets)."""

    id: str
    document_id: str
    start: int
    end: int
    text: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _stripped(text: str, start: int, end: int) -> tuple[int, int] | None:
    """``(start, end)`` moved inwards past whitespace; None when nothing is left."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def _split_spans(text: str, ends: re.Pattern[str]) -> list[tuple[int, int]]:
    """The spans of ``text`` between matches of ``ends`` (each match kept with the span before
    it), whitespace stripped, empty spans dropped."""
    spans, start = [], 0
    for cut in [m.end() for m in ends.finditer(text)] + [len(text)]:
        span = _stripped(text, start, cut)
        if span is not None:
            spans.append(span)
        start = cut
    return spans


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """The (start, end) of each sentence of ``text``."""
    return _split_spans(text, SENTENCE_END)


def paragraph_spans(text: str) -> list[tuple[int, int]]:
    """The (start, end) of each blank-line-separated paragraph of ``text``."""
    return _split_spans(text, PARAGRAPH_BREAK)


def token_spans(text: str, tokenizer: Any) -> list[tuple[int, int]]:
    """The (start, end) of each token ``tokenizer`` makes of ``text`` (no special tokens)."""
    offsets = tokenizer(text, add_special_tokens=False,
                        return_offsets_mapping=True)["offset_mapping"]
    return [(s, e) for s, e in offsets if e > s]


def windows(count: int, size: int, overlap: int) -> Iterator[tuple[int, int]]:
    """``(first, last)`` unit indices (last excluded) of each chunk over ``count`` units."""
    first = 0
    while first < count:
        last = min(first + size, count)
        yield first, last
        if last == count:
            return
        first += size - overlap


def chunk_settings(by: str, size: int | None = None,
                   overlap: int | None = None) -> tuple[int, int]:
    """The ``(size, overlap)`` to chunk with: the defaults of ``by`` where not given (the
    default overlap shrinks to fit a smaller size), checked."""
    if by not in DEFAULTS:
        raise ConfigError(f"--chunk-by {by!r} is not a way to chunk; choose from "
                          f"{', '.join(DEFAULTS)}")
    default_size, default_overlap = DEFAULTS[by]
    size = default_size if size is None else size
    if size < 1:
        raise ConfigError(f"--chunk-size must be at least 1 ({by}), got {size}")
    overlap = min(default_overlap, size - 1) if overlap is None else overlap
    if not 0 <= overlap < size:
        raise ConfigError(f"--overlap must be from 0 to --chunk-size - 1 ({size - 1}), "
                          f"got {overlap}")
    return size, overlap


def chunk_documents(documents: Sequence[Document], by: str = "tokens",
                    size: int | None = None, overlap: int | None = None,
                    tokenizer: Any = None) -> list[Chunk]:
    """Every document's chunks, in order (``tokenizer`` is needed for ``by="tokens"``)."""
    size, overlap = chunk_settings(by, size, overlap)
    if by == "tokens" and tokenizer is None:
        raise ConfigError("chunking by tokens needs a tokenizer (the embedder's)")
    chunks = []
    for doc in documents:
        if by == "tokens":
            spans = token_spans(doc.text, tokenizer)
        else:
            spans = sentence_spans(doc.text) if by == "sentences" else paragraph_spans(doc.text)
        for n, (first, last) in enumerate(windows(len(spans), size, overlap)):
            start, end = spans[first][0], spans[last - 1][1]
            chunks.append(Chunk(f"{doc.id}#{n}", doc.id, start, end, doc.text[start:end]))
    return chunks
