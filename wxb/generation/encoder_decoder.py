"""Encoder-decoder models in the decoding loops, which are written for decoder-only models.

The source is encoded once; the decoder then runs as a decoder-only model whose "prompt" is
the start token and whose cache also carries the encoder's memory. An encoder-decoder model
(``config.is_encoder_decoder``) provides::

    memory = model.encode(input_ids, attention_mask)   # a tuple of (batch, ...) tensors
    logits, cache = model.decode(decoder_input_ids, memory, cache, position_ids)
    cache.reorder(beam_idx)

and its config ``decoder_start_token_id`` and ``decoder_vocab_size``. The source is token ids
(batch, src), or, for a model whose ``main_input_name`` is ``input_features`` (Whisper),
features (batch, channels, frames). The decoder's prompt is the start token, or the
``decoder_input_ids`` given (Whisper's forced <|startoftranscript|> <|en|> ... prefix). The
output sequences start with that prompt, as transformers' do for encoder-decoder models.
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
def decoder_view(model: Any, inputs: Any, attention_mask: Any,
                 decoder_input_ids: Any = None) -> tuple[DecoderView, torch.Tensor, torch.Tensor]:
    """Encode the source; return the decoder view, its prompt (batch, n): the start token, or
    ``decoder_input_ids`` (batch, n), or (n,) for every row, and that prompt's attention
    mask."""
    device = next(model.parameters()).device
    if getattr(model, "main_input_name", "input_ids") == "input_features":
        source, mask = features_tensor(inputs, device), None  # whole windows: nothing is padded
    else:
        source = _token_ids(inputs, device)
        mask = None if attention_mask is None else torch.as_tensor(attention_mask,
                                                                   device=device)
        if mask is not None and mask.shape != source.shape:
            raise ConfigError(f"attention_mask has shape {tuple(mask.shape)} but input_ids has "
                              f"{tuple(source.shape)}; they must match")
    memory = model.encode(source, mask)
    batch = source.shape[0]
    if decoder_input_ids is None:
        prompt = torch.full((batch, 1), model.config.decoder_start_token_id, device=device)
    else:
        prompt = torch.as_tensor(decoder_input_ids, device=device)
        prompt = prompt.expand(batch, -1) if prompt.dim() == 1 else prompt
        if prompt.dim() != 2 or prompt.dtype.is_floating_point or prompt.shape[0] != batch:
            raise ConfigError(f"decoder_input_ids must be token ids of shape ({batch}, n) or "
                              f"(n,), got {prompt.dtype} of shape {tuple(prompt.shape)}")
    prompt = prompt.long()
    return DecoderView(model, memory), prompt, torch.ones_like(prompt)


def _token_ids(input_ids: Any, device: torch.device) -> torch.Tensor:
    if input_ids is None:
        raise ConfigError("an encoder-decoder model needs input_ids: the source to translate")
    ids = torch.as_tensor(input_ids, device=device)
    ids = ids[None] if ids.dim() == 1 else ids
    if ids.dim() != 2 or ids.dtype.is_floating_point:
        raise ConfigError(f"input_ids must be token ids of shape (batch, src), got {ids.dtype} "
                          f"of shape {tuple(ids.shape)}")
    return ids.long()


def features_tensor(input_features: Any, device: torch.device) -> torch.Tensor:
    """Log-mel features as a (batch, mels, frames) float tensor on ``device`` (a 2-D window
    is a batch of one)."""
    if input_features is None:
        raise ConfigError("a speech model needs input_features: log-mel features of shape "
                          "(batch, mels, frames)")
    features = torch.as_tensor(input_features, device=device)
    features = features[None] if features.dim() == 2 else features
    if features.dim() != 3 or not features.dtype.is_floating_point:
        raise ConfigError(f"input_features must be log-mel features of shape (batch, mels, "
                          f"frames), got {features.dtype} of shape {tuple(features.shape)}")
    return features
