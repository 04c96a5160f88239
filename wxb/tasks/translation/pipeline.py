"""Translation with a trained Seq2Seq or Transformer folder, answering as ``transformers``'
translation pipeline does: ``[{"translation_text": "..."}]``, one per text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from wxb.tasks.encoder_decoder import decode_texts, load_encoder_decoder
from wxb.tasks.translation.attention import plot_translation_attention


class Translator:
    """``translator(texts, num_beams=4)`` -> one ``{"translation_text"}`` per text;
    ``translator.plot_attention(text, "out.png")`` draws the attention of one translation.

    ``folder`` is what ``wxb recipe run zh-en-seq2seq`` (or any translation run) saves: the
    model with its tokenizers. ``generate_kwargs`` are defaults for every call (``num_beams``,
    ``max_new_tokens``, ...).
    """

    def __init__(self, folder: str | Path, device: str | torch.device | None = None,
                 **generate_kwargs: Any) -> None:
        model, self.source_tokenizer, self.target_tokenizer = load_encoder_decoder(folder)
        self.model = model.to(device or "cpu")
        self.defaults = {"max_new_tokens": 64, **generate_kwargs}

    def __call__(self, texts: str | list[str], **generate_kwargs: Any) -> list[dict[str, str]]:
        texts = [texts] if isinstance(texts, str) else list(texts)
        outputs = decode_texts(self.model, self.source_tokenizer, self.target_tokenizer,
                                  texts, **{**self.defaults, **generate_kwargs})
        return [{"translation_text": text} for text in outputs]

    def plot_attention(self, text: str, path: str | Path, **generate_kwargs: Any
                       ) -> tuple[str, Path]:
        """Translate ``text`` and draw its attention heatmap into the PNG ``path``; returns
        the translation and the path."""
        return plot_translation_attention(self.model, self.source_tokenizer,
                                          self.target_tokenizer, text, path,
                                          {**self.defaults, **generate_kwargs},
                                          title=f"Attention: {text[:40]}")
