"""`wxb translate`: translate text with a trained Seq2Seq or Transformer folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def translate(
    text: Annotated[list[str], typer.Argument(help="text(s) to translate", show_default=False)],
    model: Annotated[str, typer.Option(
        help="the model folder of a translation run, e.g. runs/zh-en-seq2seq/model")],
    attention: Annotated[Path | None, typer.Option(
        help="draw the attention heatmap of the (first) translation into this PNG")] = None,
    num_beams: Annotated[int, typer.Option(help="beam width (1: greedy)")] = 4,
    max_new_tokens: Annotated[int, typer.Option(help="most output tokens")] = 64,
) -> None:
    """Print the translation of each text, one per line.

    Example: wxb translate --model runs/zh-en-seq2seq/model "我們明天見。"

    Example: wxb translate --model runs/zh-en-seq2seq/model "我很好。" --attention att.png
    """
    from wxb.tasks.translation.pipeline import Translator

    translator = Translator(model, num_beams=num_beams, max_new_tokens=max_new_tokens)
    for answer in translator(text):
        print(answer["translation_text"])
    if attention is not None:
        _, path = translator.plot_attention(text[0], attention)
        print(f"attention heatmap: {path}")
