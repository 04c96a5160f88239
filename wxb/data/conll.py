"""CoNLL files: one token per line with its columns (CoNLL-2003: word, POS, chunk, NER tag),
a blank line between sentences, ``-DOCSTART-`` lines between documents."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wxb.errors import DataError


@dataclass
class TaggedSentence:
    tokens: list[str]
    tags: list[str]


def read_conll(path: str | Path, *, tag_column: int = -1,
               columns: int | None = None) -> list[TaggedSentence]:
    """The sentences of a CoNLL file: tokens (the first column) and tags (``tag_column``).

    ``columns`` is how many fields every line has (default: as many as the first line); a
    line with another count is an error naming its number.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"CoNLL file {path} does not exist")
    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []

    def close() -> None:
        if tokens:
            sentences.append(TaggedSentence(list(tokens), list(tags)))
            tokens.clear()
            tags.clear()

    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                close()
                continue
            if fields[0] == "-DOCSTART-":
                close()
                continue
            columns = columns or len(fields)
            if len(fields) != columns:
                raise DataError(f"{path}, line {number}: {len(fields)} fields, expected "
                                f"{columns} (token ... tag, separated by spaces): {line.strip()!r}")
            tokens.append(fields[0])
            tags.append(fields[tag_column])
    close()
    if not sentences:
        raise DataError(f"CoNLL file {path} holds no sentences")
    return sentences
