"""Documents to retrieve from, read from text files and tables; every one has an id.

- A **.txt / .md file is one document** (its whole text, id: the file name without its suffix,
  e.g. ``faq`` for ``docs/faq.md``). The chunker cuts it into passages afterwards, so a chunk's
  offsets point into the file's own text; to retrieve blank-line paragraphs one by one, chunk
  by ``paragraphs`` (size 1) rather than splitting the file into documents.
- A **table** (.csv / .tsv / .jsonl / .json lines) gives one document a row: the text of one
  ``column`` (default ``text``), or a ``template`` over the columns such as
  ``"question:{q} answer:{a}"`` (Python's ``str.format`` fields). Its id is the row's
  ``id_column`` (default ``id``) where the table has one, else ``<file name>:<row number>``
  (from 1, the header not counted). A row whose column (or every template field) is empty
  is skipped.
- A **folder** stands for every such file inside it (recursively, in sorted order).

Two documents with the same id are refused: retrieval scores and sources name documents by id.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wxb.errors import DataError

TEXT_SUFFIXES = (".txt", ".md")


@dataclass(frozen=True)
class Document:
    """One document: its ``id``, its ``text`` and the file it came from."""

    id: str
    text: str
    source: str


def read_documents(paths: Iterable[str | Path], *, column: str = "text",
                   template: str | None = None, id_column: str = "id") -> list[Document]:
    """The documents of files and folders (see the module's docstring); refuses an empty set."""
    from wxb.data.text import TABLE_SUFFIXES

    suffixes = TEXT_SUFFIXES + TABLE_SUFFIXES
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in suffixes)
        elif path.is_file():
            if path.suffix not in suffixes:
                raise DataError(f"{path} has suffix {path.suffix!r}; documents are read from "
                                f"{', '.join(suffixes)} files (or folders of them)")
            files.append(path)
        else:
            raise DataError(f"document file {path} does not exist")
    documents = []
    for path in files:
        if path.suffix in TEXT_SUFFIXES:
            text = path.read_text(encoding="utf-8")
            if text.strip():
                documents.append(Document(path.stem, text, str(path)))
        else:
            documents += table_documents(path, column=column, template=template,
                                         id_column=id_column)
    if not documents:
        shown = ", ".join(str(p) for p in paths) or "(none given)"
        raise DataError(f"no document to index in {shown}: give .txt/.md files or tables "
                        "(.csv/.tsv/.jsonl) with text in them")
    _refuse_duplicate_ids(documents)
    return documents


def table_documents(path: str | Path, *, column: str = "text", template: str | None = None,
                    id_column: str = "id") -> list[Document]:
    """One document a row of a table: the ``column``'s text, or the ``template`` filled in."""
    from wxb.data.text import read_rows

    path = Path(path)
    rows = read_rows(path)
    if not rows:
        return []
    columns = list(rows[0])
    needed = _template_fields(template, path) if template is not None else [column]
    for name in needed:
        if name not in columns:
            what = "--template field" if template is not None else "column"
            raise DataError(f"{path} has no column {name!r} (the {what}); its columns are: "
                            f"{', '.join(map(str, columns))}"
                            + ("" if template is not None else " (set --column or --template)"))
    documents = []
    for number, row in enumerate(rows, start=1):
        values = {k: "" if v is None else str(v) for k, v in row.items()}
        if not any(values.get(name, "").strip() for name in needed):
            continue
        text = template.format_map(values) if template is not None else values[column]
        doc_id = values.get(id_column) or f"{path.stem}:{number}"
        documents.append(Document(doc_id, text, str(path)))
    return documents


def _template_fields(template: str, path: Path) -> list[str]:
    """The column names a ``str.format`` template refers to; refuses positional fields."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as err:
        raise DataError(f"--template {template!r} is not a format string ({err}); write "
                        "columns as {name}, braces as {{ }}") from None
    if not fields or any(not name or name.isdigit() for name in fields):
        raise DataError(f"--template {template!r} must name columns of {path}, e.g. "
                        "'question:{q} answer:{a}'")
    return fields


def _refuse_duplicate_ids(documents: list[Document]) -> None:
    first: dict[str, Any] = {}
    for doc in documents:
        if doc.id in first:
            raise DataError(f"two documents have the id {doc.id!r} ({first[doc.id]} and "
                            f"{doc.source}); give each an id column or rename a file")
        first[doc.id] = doc.source
