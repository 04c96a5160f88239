"""The layers of the 2017 Transformer (``wxb.models.transformer`` puts them together):
multi-head attention, the encoder and decoder layers with their residual wrapping, and the two
stacks with their embeddings.

    encoder layer   x = wrap(x, self-attention);  x = wrap(x, feed-forward)
    decoder layer   x = wrap(x, causal self-attention);  x = wrap(x, attention over the memory)
                    x = wrap(x, feed-forward)
    wrap            post-LN: LayerNorm(x + Dropout(f(x)));  pre-LN: x + Dropout(f(LayerNorm(x)))
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from wxb.errors import ConfigError
from wxb.models.outputs import BaseModelOutput, BaseModelOutputWithPastAndCrossAttentions
from wxb.nn import Dropout, KVCache, activation, attention, make_mask, sinusoidal_positions

if TYPE_CHECKING:  # the config's module builds the model from these layers
    from wxb.models.transformer import TransformerConfig


class SinusoidalPositions(nn.Module):
    """The fixed position table (max_positions, d_model), computed, not kept in checkpoints."""

    def __init__(self, num_positions: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("weight", sinusoidal_positions(num_positions, dim, interleave=False),
                             persistent=False)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        if int(position_ids.max()) >= self.weight.shape[0]:
            raise ConfigError(f"position {int(position_ids.max())} is past "
                              f"max_position_embeddings {self.weight.shape[0]}; shorten the "
                              "input or raise max_position_embeddings")
        return F.embedding(position_ids, self.weight)


class Attention(nn.Module):
    """Multi-head attention; queries from ``x``, keys and values from ``x`` or the memory."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, seq, d_model) -> (batch, heads, seq, head_dim)."""
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split(self.k_proj(source)), self.split(self.v_proj(source))

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                mask: torch.Tensor | None, *, is_causal: bool = False,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (batch, q_len, d_model); k, v (batch, heads, k_len, head_dim); mask True where a
        query may look. Returns (batch, q_len, d_model) and the weights (batch, heads, q_len,
        k_len) when asked for."""
        out, weights = attention(self.split(self.q_proj(x)), k, v, mask, is_causal=is_causal,
                                 dropout_p=self.dropout if self.training else 0.0,
                                 need_weights=need_weights)
        return self.out_proj(out.transpose(1, 2).flatten(2)), weights


class _Layer(nn.Module):
    """What both layer kinds share: residual wrapping (post- or pre-LN) and the feed-forward."""

    def __init__(self, config: TransformerConfig, ffn_dim: int) -> None:
        super().__init__()
        self.pre_ln = config.normalize_before
        self.act = activation(config.activation_function)
        self.drop = Dropout(config.dropout)
        self.act_drop = Dropout(config.activation_dropout)
        self.fc1 = nn.Linear(config.d_model, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, config.d_model)
        self.final_layer_norm = nn.LayerNorm(config.d_model)

    def sublayer(self, x: torch.Tensor, norm: nn.LayerNorm, fn) -> tuple[torch.Tensor, Any]:
        """x + Dropout(fn(x)) normalised after (post-LN) or fn's input normalised (pre-LN);
        ``fn`` returns (output, extra) and extra is passed back."""
        out, extra = fn(norm(x) if self.pre_ln else x)
        x = x + self.drop(out)
        return (x if self.pre_ln else norm(x)), extra

    def feed_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.fc2(self.act_drop(self.act(self.fc1(x)))), None


class EncoderLayer(_Layer):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__(config, config.encoder_ffn_dim)
        self.self_attn = Attention(config.d_model, config.encoder_attention_heads,
                                   config.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (batch, src, d_model) -> the same shape, and the self-attention weights (batch,
        heads, src, src) when ``need_weights``."""
        def attend(h):
            return self.self_attn(h, *self.self_attn.keys_values(h), mask,
                                  need_weights=need_weights)

        x, weights = self.sublayer(x, self.self_attn_layer_norm, attend)
        return self.sublayer(x, self.final_layer_norm, self.feed_forward)[0], weights


class DecoderLayer(_Layer):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__(config, config.decoder_ffn_dim)
        heads = config.decoder_attention_heads
        self.self_attn = Attention(config.d_model, heads, config.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model)
        self.encoder_attn = Attention(config.d_model, heads, config.attention_dropout)
        self.encoder_attn_layer_norm = nn.LayerNorm(config.d_model)

    def forward(self, x: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor],
                memory_mask: torch.Tensor | None, cache: KVCache | None, index: int,
                need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None,
                                             torch.Tensor | None]:
        """x (batch, new, d_model), the newest ``new`` target positions; ``cache`` holds the
        earlier ones' keys and values. Returns x and, when ``need_weights``, the weights of
        the self-attention (batch, heads, new, past + new) and of the attention over the
        source (batch, heads, new, src)."""
        def attend_self(h):
            k, v = self.self_attn.keys_values(h)
            if cache is not None:
                k, v = cache.update(index, k, v)
            # The queries are the last `new` of k_len positions; each sees itself and before.
            mask = make_mask(None, h.shape[1], k.shape[2], causal=True)
            return self.self_attn(h, k, v, mask, is_causal=mask is None and h.shape[1] > 1,
                                  need_weights=need_weights)

        def attend_memory(h):
            return self.encoder_attn(h, *memory_kv, memory_mask, need_weights=need_weights)

        x, self_weights = self.sublayer(x, self.self_attn_layer_norm, attend_self)
        x, cross_weights = self.sublayer(x, self.encoder_attn_layer_norm, attend_memory)
        x = self.sublayer(x, self.final_layer_norm, self.feed_forward)[0]
        return x, self_weights, cross_weights


class _Stack(nn.Module):
    """Embeddings (scaled, plus positions, dropout), the layers, and pre-LN's last norm."""

    def __init__(self, config: TransformerConfig, embed_tokens: nn.Embedding,
                 layers: list[nn.Module]) -> None:
        super().__init__()
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        self.embed_tokens = embed_tokens
        self.embed_positions = SinusoidalPositions(config.max_position_embeddings,
                                                   config.d_model)
        self.layers = nn.ModuleList(layers)
        self.layer_norm = nn.LayerNorm(config.d_model) if config.normalize_before else None
        self.drop = Dropout(config.dropout)

    def embed(self, ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return self.drop(self.embed_tokens(ids) * self.embed_scale
                         + self.embed_positions(position_ids))

    def close(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer_norm(x) if self.layer_norm is not None else x


def _collected(values: list[torch.Tensor], wanted: bool) -> tuple[torch.Tensor, ...] | None:
    return tuple(values) if wanted else None


class TransformerEncoder(_Stack):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_attentions: bool = False,
                output_hidden_states: bool = False) -> BaseModelOutput:
        """(batch, src) ids -> the memory, ``last_hidden_state`` (batch, src, d_model); hidden
        states are each layer's input and the memory."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        x = self.embed(input_ids, positions)
        mask = make_mask(attention_mask, input_ids.shape[1], input_ids.shape[1], causal=False)
        hidden, weights = [], []
        for layer in self.layers:
            hidden.append(x)
            x, w = layer(x, mask, output_attentions)
            weights.append(w)
        x = self.close(x)
        return BaseModelOutput(x, _collected([*hidden, x], output_hidden_states),
                               _collected(weights, output_attentions))


class TransformerDecoder(_Stack):
    def forward(self, input_ids: torch.Tensor, memory_kv: list[tuple[torch.Tensor, torch.Tensor]],
                memory_mask: torch.Tensor | None, *, cache: KVCache | None = None,
                position_ids: torch.Tensor | None = None, output_attentions: bool = False,
                output_hidden_states: bool = False) -> BaseModelOutputWithPastAndCrossAttentions:
        """(batch, new) target ids -> ``last_hidden_state`` (batch, new, d_model); with
        ``output_attentions`` each layer's self-attention and attention over the source."""
        if position_ids is None:
            start = cache.get_seq_length() if cache is not None else 0
            position_ids = torch.arange(start, start + input_ids.shape[1],
                                        device=input_ids.device)[None]
        x = self.embed(input_ids, position_ids)
        hidden, self_weights, cross_weights = [], [], []
        for index, layer in enumerate(self.layers):
            hidden.append(x)
            x, w_self, w_cross = layer(x, memory_kv[index], memory_mask, cache, index,
                                       output_attentions)
            self_weights.append(w_self)
            cross_weights.append(w_cross)
        x = self.close(x)
        return BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=x, past_key_values=cache,
            hidden_states=_collected([*hidden, x], output_hidden_states),
            attentions=_collected(self_weights, output_attentions),
            cross_attentions=_collected(cross_weights, output_attentions))
