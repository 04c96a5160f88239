"""Summarizing with a trained folder, answering as ``transformers``' summarization pipeline
does: ``[{"summary_text": "..."}]``, one per document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from wxb.tasks.encoder_decoder import load_encoder_decoder
from wxb.tasks.models import load_chat_model
from wxb.tasks.summarization.decoder import (
    DEFAULT_PROMPT,
    holds_causal_lm,
    summarize_with_decoder,
)
from wxb.tasks.summarization.model import load_settings, summarize_texts

DECODER_SOURCE_LENGTH = 512  # document tokens a decoder reads when its folder does not say


class Summarizer:
    """``summarizer(documents, num_beams=4)`` -> one ``{"summary_text"}`` per document.

    ``folder`` is what a summarization run saves (``wxb recipe run news-t5``), a Hugging
    Face T5 folder, or a causal LM (folder or GGUF file: the document goes into a prompt,
    ``decoder``): the prefix or prompt, the source length and the generation settings it was trained
    with are the defaults; ``generate_kwargs`` override them for every call, and a call's own
    keyword arguments override those.
    """

    def __init__(self, folder: str | Path, device: str | torch.device | None = None,
                 **generate_kwargs: Any) -> None:
        settings = load_settings(folder) if Path(folder).is_dir() else {}
        self.prefix = settings.get("prefix") or ""
        self.prompt = settings.get("prompt") or DEFAULT_PROMPT
        self.max_source_length = settings.get("max_source_length")
        self.defaults = {"max_new_tokens": 64, **settings.get("generation", {}),
                         **generate_kwargs}
        self.decoder_only = holds_causal_lm(folder)
        if self.decoder_only:
            model, self.tokenizer = load_chat_model(str(folder), require_template=False)
            model.eval()
        else:
            model, self.source_tokenizer, self.target_tokenizer = load_encoder_decoder(folder)
        self.model = model.to(device or "cpu")

    def __call__(self, documents: str | list[str], **generate_kwargs: Any
                 ) -> list[dict[str, str]]:
        documents = [documents] if isinstance(documents, str) else list(documents)
        settings = {**self.defaults, **generate_kwargs}
        if self.decoder_only:
            summaries = summarize_with_decoder(
                self.model, self.tokenizer, documents, prompt=self.prompt,
                max_source_length=self.max_source_length or DECODER_SOURCE_LENGTH, **settings)
        else:
            summaries = summarize_texts(self.model, self.source_tokenizer,
                                        self.target_tokenizer, documents, prefix=self.prefix,
                                        max_source_length=self.max_source_length, **settings)
        return [{"summary_text": text} for text in summaries]
