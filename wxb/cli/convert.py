"""`wxb convert`: read a model folder or hub id, write a clean Hugging Face folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DTYPES = ("float32", "float16", "bfloat16")


def convert(
    source: Annotated[str, typer.Argument(help="model folder or Hugging Face Hub id")],
    out: Annotated[Path, typer.Argument(help="folder to write")],
    dtype: Annotated[str | None, typer.Option(help="cast the weights: " + ", ".join(DTYPES))]
    = None,
) -> None:
    """Load a supported checkpoint (safetensors, shards or pytorch_model.bin) and save it as
    config.json + model.safetensors, with its tokenizer files, for wxb and transformers.

    Example: wxb convert ~/models/gpt2 runs/gpt2 --dtype bfloat16
    """
    from wxb.hub import convert_folder

    written = convert_folder(source, out, dtype)
    print(f"wrote {written}")
