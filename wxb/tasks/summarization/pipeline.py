"""Summarizing with a trained folder, answering as ``transformers``' summarization pipeline
does: ``[{"summary_text": "..."}]``, one per document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from wxb.tasks.summarization.model import load_settings, summarize_texts
from wxb.tasks.translation.model import load_translation_model


class Summarizer:
    """``summarizer(documents, num_beams=4)`` -> one ``{"summary_text"}`` per document.

    ``folder`` is what a summarization run saves (``wxb recipe run news-t5``), or a Hugging
    Face T5 folder: the prefix, the source length and the generation settings it was trained
    with are the defaults; ``generate_kwargs`` override them for every call, and a call's own
    keyword arguments override those.
    """

    def __init__(self, folder: str | Path, device: str | torch.device | None = None,
                 **generate_kwargs: Any) -> None:
        model, self.source_tokenizer, self.target_tokenizer = load_translation_model(folder)
        self.model = model.to(device or "cpu")
        settings = load_settings(folder)
        self.prefix = settings.get("prefix") or ""
        self.max_source_length = settings.get("max_source_length")
        self.defaults = {"max_new_tokens": 64, **settings.get("generation", {}),
                         **generate_kwargs}

    def __call__(self, documents: str | list[str], **generate_kwargs: Any
                 ) -> list[dict[str, str]]:
        documents = [documents] if isinstance(documents, str) else list(documents)
        summaries = summarize_texts(self.model, self.source_tokenizer, self.target_tokenizer,
                                    documents, prefix=self.prefix,
                                    max_source_length=self.max_source_length,
                                    **{**self.defaults, **generate_kwargs})
        return [{"summary_text": text} for text in summaries]
