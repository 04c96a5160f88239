"""`wxb summarize`: summarize documents with a trained summarization folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wxb.errors import DataError


def summarize(
    documents: Annotated[list[str], typer.Argument(
        help="text(s) to summarize, or files: .txt (one document), .csv / .tsv / .jsonl (one "
             "document a row, from --column)", show_default=False)],
    model: Annotated[str, typer.Option(
        help="the model folder of a summarization run, e.g. runs/news-t5/model")],
    column: Annotated[str, typer.Option(help="the column holding documents in a table")] =
        "document",
    num_beams: Annotated[int | None, typer.Option(
        help="beam width (default: the folder's setting)")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(
        help="most summary tokens (default: the folder's setting)")] = None,
) -> None:
    """Print the summary of each document, one per line.

    Example: wxb summarize --model runs/news-t5/model article.txt

    Example: wxb summarize --model runs/lcsts-transformer/model "日前，方舟子发文直指..."
    """
    from wxb.tasks.summarization.pipeline import Summarizer

    texts = [text for document in documents for text in read_documents(document, column)]
    settings = {k: v for k, v in (("num_beams", num_beams), ("max_new_tokens", max_new_tokens))
                if v is not None}
    for answer in Summarizer(model, **settings)(texts):
        print(answer["summary_text"])


def read_documents(argument: str, column: str) -> list[str]:
    """The documents an argument stands for: a file's (a text file is one document, a table
    one per row), else the argument itself."""
    from wxb.data.text import TABLE_SUFFIXES, read_rows

    path = Path(argument)
    if len(argument) > 255 or not path.is_file():
        return [argument]
    if path.suffix not in TABLE_SUFFIXES:
        return [path.read_text(encoding="utf-8")]
    rows = read_rows(path)
    if rows and column not in rows[0]:
        raise DataError(f"{path} has no column {column!r}; its columns are: "
                        f"{', '.join(map(str, rows[0]))} (set --column)")
    texts = [str(row[column] or "").strip() for row in rows]
    if not any(texts):
        raise DataError(f"{path}: no document in column {column!r}")
    return [t for t in texts if t]
