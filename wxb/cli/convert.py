"""`wxb convert`: read a model folder, hub id, GGUF file or CTranslate2 (faster-whisper) Whisper
folder, write a clean Hugging Face folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DTYPES = ("float32", "float16", "bfloat16")


def convert(
    source: Annotated[str, typer.Argument(
        help="model folder, Hugging Face Hub id, .gguf file or CTranslate2 Whisper folder")],
    out: Annotated[Path, typer.Argument(help="folder to write")],
    dtype: Annotated[str | None, typer.Option(help="cast the weights: " + ", ".join(DTYPES))]
    = None,
) -> None:
    """Load a supported checkpoint (safetensors, shards, pytorch_model.bin, or a llama.cpp GGUF
    file, dequantized, or a CTranslate2 Whisper folder as faster-whisper uses, dequantized) and
    save it as config.json + model.safetensors, with its tokenizer files (a GGUF file's tokenizer
    and chat template as tokenizer.json; a Whisper's generation and preprocessor configs), for
    wxb and transformers.

    Example: wxb convert ~/models/gpt2 runs/gpt2 --dtype bfloat16

    Example: wxb convert SmolLM2-135M-Instruct.Q4_1.gguf runs/smollm2

    Example: wxb convert faster-whisper-tiny.en runs/whisper-tiny.en
    """
    from wxb.ctranslate2 import convert_ctranslate2, is_ctranslate2_model
    from wxb.hub import convert_folder

    convert_one = convert_ctranslate2 if is_ctranslate2_model(source) else convert_folder
    written = convert_one(source, out, dtype)
    print(f"wrote {written}")
