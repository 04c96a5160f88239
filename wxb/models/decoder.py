"""The forward pass every decoder-only language model shares (GPT-2, LLaMA).

A family supplies its pieces: ``embed`` (token ids and positions to vectors, plus anything its
layers need, such as LLaMA's rotary angles), ``layers``, ``final_norm`` and ``lm_head``. This
class runs them: the cache, positions, masks, the layer loop, logits and the loss.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from wxb.errors import ConfigError
from wxb.models.base import PreTrainedModel
from wxb.models.outputs import CausalLMOutput, causal_lm_loss
from wxb.nn import KVCache, make_mask


class CausalLMBase(PreTrainedModel):
    lm_head: nn.Linear

    def embed(self, input_ids: torch.Tensor,
              position_ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """(batch, seq) ids -> (batch, seq, hidden) vectors and extra keyword arguments for
        every layer."""
        raise NotImplementedError

    def layers(self) -> nn.ModuleList:
        raise NotImplementedError

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        logits_to_keep: int = 0,
    ) -> CausalLMOutput:
        """input_ids (batch, seq); attention_mask (batch, past + seq), 0 on padding;
        position_ids (batch, seq), by default counting on from the cached positions.

        ``labels`` (batch, seq) gives the next-token loss (-100 ignored); ``use_cache`` returns
        a KVCache for the next step; ``logits_to_keep=n`` computes only the last n positions'
        logits (decoding needs just one).
        """
        layers = self.layers()
        seq = input_ids.shape[1]
        if use_cache and past_key_values is None:
            past_key_values = KVCache(len(layers))
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        window = self.config.max_position_embeddings
        if past + seq > window:
            raise ConfigError(f"{past + seq} positions exceed the model's context window of "
                              f"{window}; shorten the input")
        if position_ids is None:
            position_ids = torch.arange(past, past + seq, device=input_ids.device)[None]
        x, extras = self.embed(input_ids, position_ids)
        mask = make_mask(attention_mask, seq, past + seq)
        hidden, weights = [], []
        for layer in layers:
            hidden.append(x)
            x, w = layer(x, mask, past_key_values, output_attentions, **extras)
            weights.append(w)
        x = self.final_norm(x)
        hidden.append(x)
        logits = self.lm_head(x[:, -logits_to_keep:] if logits_to_keep else x)
        return CausalLMOutput(
            loss=causal_lm_loss(logits, labels) if labels is not None else None,
            logits=logits, past_key_values=past_key_values,
            hidden_states=tuple(hidden) if output_hidden_states else None,
            attentions=tuple(weights) if output_attentions else None)
