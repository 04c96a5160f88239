"""Texts in, texts out: translating with an encoder-decoder model and its two tokenizers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from wxb.errors import ConfigError
from wxb.generation.generate import generate


@torch.no_grad()
def translate_texts(model: Any, source_tokenizer: Any, target_tokenizer: Any,
                    texts: Sequence[str], *, batch_size: int = 64,
                    max_source_length: int | None = None, **generate_kwargs: Any) -> list[str]:
    """Translate ``texts`` in batches (sorted by length, so little padding is decoded) and
    return them in the order given; ``generate_kwargs`` are ``generate``'s (``num_beams``,
    ``max_new_tokens``, ...)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: list[str] = [""] * len(texts)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = source_tokenizer([texts[i] for i in chunk], padding=True,
                                 truncation=max_source_length is not None,
                                 max_length=max_source_length, return_tensors="pt")
        sequences = generate(model, batch["input_ids"].to(device),
                             attention_mask=batch["attention_mask"].to(device),
                             **generate_kwargs)
        # The first column is the decoder's start token.
        for i, text in zip(chunk, target_tokenizer.batch_decode(
                sequences[:, 1:].tolist(), skip_special_tokens=True), strict=True):
            out[i] = text.strip()
    return out


@torch.no_grad()
def cross_attention(model: Any, source_ids: Sequence[int],
                    output_ids: Sequence[int]) -> np.ndarray:
    """How much each output token attended to each source token: (len(output_ids) - 1,
    len(source_ids)), for an output that starts with the decoder start token; the last
    decoder layer's weights, averaged over its heads."""
    source = torch.tensor([list(source_ids)], device=next(model.parameters()).device)
    output = torch.tensor([list(output_ids)], device=source.device)
    result = model(source, decoder_input_ids=output[:, :-1], output_attentions=True)
    if result.cross_attentions is None:
        raise ConfigError(f"{type(model).__name__} has no attention over the source "
                         "(attention: none)")
    return result.cross_attentions[-1][0].mean(dim=0).float().cpu().numpy()
