"""The summarizer's folder: an encoder-decoder with its tokenizer(s) (as translation saves
them), or a decoder-only model with its tokenizer, and ``summarization.json``, the settings it
summarizes with: the source ``prefix`` (``"summarize: "`` for T5) or the decoder's ``prompt``,
``max_source_length``, the ``language`` and the generation settings. A Hugging Face T5
folder has no such file; its prefix and generation settings come from ``config.json``'s
``task_specific_params.summarization``, as ``transformers``' pipeline reads them. Nothing
here trains, so the pipeline loads folders with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wxb.errors import DataError
from wxb.io import atomic_write_json

if TYPE_CHECKING:
    from wxb.models.base import PreTrainedModel
    from wxb.tokenizers.base import Tokenizer

SETTINGS_FILE = "summarization.json"
# generate() settings of transformers' task_specific_params that wxb's generate takes.
GENERATION_KEYS = ("num_beams", "max_new_tokens", "length_penalty", "repetition_penalty",
                   "no_repeat_ngram_size", "min_new_tokens", "early_stopping")


def save_settings(folder: Path, *, prefix: str, prompt: str, max_source_length: int,
                  language: str | None, generation: dict[str, Any]) -> None:
    """``prefix`` goes before an encoder-decoder's document; ``prompt`` holds a decoder-only
    model's (``{document}``)."""
    atomic_write_json(folder / SETTINGS_FILE, {
        "prefix": prefix, "prompt": prompt, "max_source_length": max_source_length,
        "language": language, "generation": generation})


def load_settings(folder: str | Path) -> dict[str, Any]:
    """The folder's summarization settings: ``summarization.json``, else those a Hugging Face
    T5 config carries (``max_length`` read as ``max_new_tokens``), else none (no prefix)."""
    folder = Path(folder)
    path = folder / SETTINGS_FILE
    if path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(f"{path} is not JSON ({err.msg}); it is written by a "
                            "summarization run") from None
    config = folder / "config.json"
    hf = json.loads(config.read_text(encoding="utf-8")) if config.is_file() else {}
    params = (hf.get("task_specific_params") or {}).get("summarization") or {}
    generation = {k: params[k] for k in GENERATION_KEYS if k in params}
    if "max_length" in params:
        generation.setdefault("max_new_tokens", params["max_length"])
    return {"prefix": params.get("prefix", ""), "max_source_length": None, "language": None,
            "generation": generation}


def summarize_texts(model: PreTrainedModel, source: Tokenizer, target: Tokenizer,
                    documents: list[str], *, prefix: str = "", batch_size: int = 16,
                    max_source_length: int | None = None, **generate_kwargs: Any
                    ) -> list[str]:
    """The summary of each document (``prefix`` put before it), in the order given."""
    from wxb.tasks.encoder_decoder import decode_texts

    return decode_texts(model, source, target, [prefix + d for d in documents],
                           batch_size=batch_size, max_source_length=max_source_length,
                           **generate_kwargs)
