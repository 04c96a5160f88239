"""Encoder-decoder models in the decoding loops, which are written for decoder-only models.

The source is encoded once; the decoder then runs as a decoder-only model whose "prompt" is
the start token and whose cache also carries the encoder's memory. An encoder-decoder model
(``config.is_encoder_decoder``) provides::

    memory = model.encode(input_ids, attention_mask)   # a tuple of (batch, ...) tensors
    logits, cache = model.decode(decoder_input_ids, memory, cache, position_ids)
    cache.reorder(beam_idx)

and its config ``decoder_start_token_id`` and ``decoder_vocab_size``. The output sequences
start with the start token, as transformers' do for encoder-decoder models.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

from wxb.errors import ConfigError


class DecoderView:
    """``model``'s decoder over the encoded source, shaped like a decoder-only model."""

    def __init__(self, model: Any, memory: tuple[torch.Tensor, ...]) -> None:
        self.model, self.memory = model, memory
        c = model.config
        # What the decoding loop reads from a config: the target side's.
        self.config = SimpleNamespace(
            vocab_size=c.decoder_vocab_size, eos_token_id=c.eos_token_id,
            pad_token_id=c.pad_token_id, bos_token_id=c.decoder_start_token_id,
            max_position_embeddings=getattr(c, "max_position_embeddings", None))

    def parameters(self):
        return self.model.parameters()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, past_key_values: Any = None,
                use_cache: bool = True) -> SimpleNamespace:
        if past_key_values is None:  # the first step: one copy of the source per beam / sample
            copies = input_ids.shape[0] // self.memory[0].shape[0]
            self.memory = tuple(t.repeat_interleave(copies, dim=0) for t in self.memory)
        logits, cache = self.model.decode(input_ids, self.memory, past_key_values, position_ids)
        return SimpleNamespace(logits=logits, past_key_values=cache)

    __call__ = forward


@torch.no_grad()
def decoder_view(model: Any, input_ids: Any, attention_mask: Any
                 ) -> tuple[DecoderView, torch.Tensor, torch.Tensor]:
    """Encode the source; return the decoder view, its prompt (batch, 1) of start tokens and
    that prompt's attention mask."""
    if input_ids is None:
        raise ConfigError("an encoder-decoder model needs input_ids: the source to translate")
    device = next(model.parameters()).device
    ids = torch.as_tensor(input_ids, device=device)
    ids = ids[None] if ids.dim() == 1 else ids
    if ids.dim() != 2 or ids.dtype.is_floating_point:
        raise ConfigError(f"input_ids must be token ids of shape (batch, src), got {ids.dtype} "
                          f"of shape {tuple(ids.shape)}")
    mask = None if attention_mask is None else torch.as_tensor(attention_mask, device=device)
    if mask is not None and mask.shape != ids.shape:
        raise ConfigError(f"attention_mask has shape {tuple(mask.shape)} but input_ids has "
                          f"{tuple(ids.shape)}; they must match")
    memory = model.encode(ids.long(), mask)
    prompt = ids.new_full((ids.shape[0], 1), model.config.decoder_start_token_id).long()
    return DecoderView(model, memory), prompt, torch.ones_like(prompt)
