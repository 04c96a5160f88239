"""LLaMA (Touvron et al., 2023; LLaMA-3, 2024): GPT-2's decoder with three changes.

    ids -> embed_tokens -> [x + attn(rms(x)); x + swiglu(rms(x))] x num_hidden_layers
        -> norm -> lm_head -> logits

- RMSNorm instead of LayerNorm (no mean, no bias);
- rotary positions applied to q and k inside attention instead of learned position vectors;
- SwiGLU feed-forward; and grouped-query attention (num_key_value_heads < num_attention_heads).

Parameter names are Hugging Face's: ``LlamaModel`` is the bare decoder (``embed_tokens.weight``,
``layers.0.self_attn.q_proj.weight``, ...), and the heads keep it under ``model.``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from wxb.errors import ConfigError
from wxb.models.base import LabelledConfig, check_token_ids
from wxb.models.decoder import CausalLMBase, DecoderModel, SequenceClassifierBase, init_weights
from wxb.nn import KVCache, RMSNorm, RotaryEmbedding, SwiGLU, apply_rotary, attention
from wxb.nn.position import rope_frequencies


@dataclass
class LlamaConfig(LabelledConfig):
    model_type = "llama"

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None  # default: num_attention_heads (no grouping)
    head_dim: int | None = None  # default: hidden_size // num_attention_heads
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None  # {"rope_type": "llama3", "factor": 8.0, ...}
    attention_bias: bool = False
    attention_dropout: float = 0.0
    mlp_bias: bool = False
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    pad_token_id: int | None = None
    tie_word_embeddings: bool = False
    # The sequence-classification head's (a reward model has num_labels=1), as in HF.
    num_labels: int = 2
    id2label: dict | None = None
    problem_type: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.num_key_value_heads = self.num_key_value_heads or self.num_attention_heads
        self.head_dim = self.head_dim or self.hidden_size // self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(f"num_attention_heads {self.num_attention_heads} is not a multiple "
                              f"of num_key_value_heads {self.num_key_value_heads}")
        rope_frequencies(self.head_dim, self.rope_theta, self.rope_scaling)  # fails early
        check_token_ids(self, self.vocab_size,
                        generated=("bos_token_id", "eos_token_id", "pad_token_id"))

    @classmethod
    def from_dict(cls, values: dict, *, strict: bool = False) -> LlamaConfig:
        # transformers 5 writes rope_theta and rope_scaling together as rope_parameters.
        values = dict(values)
        rope = values.pop("rope_parameters", None)
        if rope:
            rope = dict(rope)
            values.setdefault("rope_theta", rope.pop("rope_theta", 10000.0))
            if rope.get("rope_type", "default") != "default":
                values.setdefault("rope_scaling", rope)
        return super().from_dict(values, strict=strict)


class LlamaAttention(nn.Module):
    def __init__(self, config: LlamaConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = config.head_dim
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, self.heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, self.kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, self.kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.heads * self.head_dim, config.hidden_size, bias=bias)
        self.dropout = config.attention_dropout

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor],
                mask: torch.Tensor | None, cache: KVCache | None,
                need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (batch, seq, hidden) -> (batch, seq, hidden), attention weights or None."""
        batch, seq, _ = x.shape
        q = self.q_proj(x).view(batch, seq, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, seq, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, seq, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, k, *rotary)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)
        out, weights = attention(q, k, v, mask, is_causal=mask is None and seq > 1,
                                 dropout_p=self.dropout if self.training else 0.0,
                                 need_weights=need_weights)
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, -1)), weights


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config: LlamaConfig, layer_idx: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = LlamaAttention(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLU(config.hidden_size, config.intermediate_size, bias=config.mlp_bias,
                          hidden_act=config.hidden_act)

    def forward(self, x, mask, cache, need_weights, rotary):  # rotary: cos, sin
        attended, weights = self.self_attn(self.input_layernorm(x), rotary, mask, cache,
                                           need_weights)
        x = x + attended
        return x + self.mlp(self.post_attention_layernorm(x)), weights


class LlamaModel(DecoderModel):
    """The bare LLaMA: ids -> the final RMSNorm's hidden states (batch, seq, hidden_size)."""

    config_class = LlamaConfig
    base_model_prefix = "model"

    def __init__(self, config: LlamaConfig, initialize: bool = True) -> None:
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config, i)
                                    for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config.head_dim, config.rope_theta, config.rope_scaling)
        if initialize:  # a head initialises it with itself (see init_weights)
            init_weights(self, config.initializer_range)

    def embed(self, input_ids: torch.Tensor,
              position_ids: torch.Tensor) -> tuple[torch.Tensor, dict]:
        x = self.embed_tokens(input_ids)
        return x, {"rotary": self.rotary_emb(position_ids, x.dtype)}

    def blocks(self) -> nn.ModuleList:
        return self.layers

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class LlamaForCausalLM(CausalLMBase):
    config_class = LlamaConfig
    base_model_prefix = "model"

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        self.model = LlamaModel(config, initialize=False)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        init_weights(self, config.initializer_range)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight


class LlamaForSequenceClassification(SequenceClassifierBase):
    """LLaMA with a scalar-per-label ``score`` head at the last token (a reward model)."""

    config_class = LlamaConfig
    base_model_prefix = "model"  # loads a LlamaForCausalLM checkpoint under a new head

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        self.model = LlamaModel(config, initialize=False)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        init_weights(self, config.initializer_range)
