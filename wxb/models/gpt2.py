"""GPT-2 (Radford et al., 2019): a stack of pre-LayerNorm Transformer decoder blocks.

    ids -> wte(ids) + wpe(positions) -> [x + attn(ln_1(x)); x + mlp(ln_2(x))] x n_layer
        -> ln_f -> lm_head (the transpose of wte: tied weights) -> logits

Parameter names are Hugging Face's. Hugging Face stores c_attn, c_proj and c_fc as ``Conv1D``
with (in, out) weights; here they are ``nn.Linear`` (out, in), and ``wxb.models.checkpoint``
transposes. ``GPT2Model`` is the bare decoder (keys ``wte.weight``, ``h.0...``); the heads keep
it under ``transformer.``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from wxb.errors import ConfigError
from wxb.models.base import LabelledConfig, check_token_ids
from wxb.models.decoder import CausalLMBase, DecoderModel, SequenceClassifierBase, init_weights
from wxb.nn import Dropout, KVCache, activation, attention


@dataclass
class GPT2Config(LabelledConfig):
    model_type = "gpt2"

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None  # default 4 * n_embd
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    bos_token_id: int | None = 50256
    eos_token_id: int | None = 50256
    pad_token_id: int | None = None
    tie_word_embeddings: bool = True
    # The sequence-classification head's (a reward model has num_labels=1), as in HF.
    num_labels: int = 2
    id2label: dict | None = None
    problem_type: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        activation(self.activation_function)
        check_token_ids(self, self.vocab_size,
                        generated=("bos_token_id", "eos_token_id", "pad_token_id"))

    @property
    def max_position_embeddings(self) -> int:
        return self.n_positions


class GPT2Attention(nn.Module):
    def __init__(self, config: GPT2Config, layer_idx: int) -> None:
        super().__init__()
        self.n_head, self.head_dim = config.n_head, config.n_embd // config.n_head
        self.layer_idx = layer_idx
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.attn_dropout = config.attn_pdrop
        self.resid_dropout = Dropout(config.resid_pdrop)
        scale = 1 / math.sqrt(self.head_dim) if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            scale /= layer_idx + 1
        self.scale = scale

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cache: KVCache | None,
                need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (batch, seq, n_embd) -> (batch, seq, n_embd), attention weights or None."""
        batch, seq, width = x.shape
        q, k, v = self.c_attn(x).view(batch, seq, 3, self.n_head, self.head_dim).unbind(2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)
        out, weights = attention(q, k, v, mask, is_causal=mask is None and seq > 1,
                                 dropout_p=self.attn_dropout if self.training else 0.0,
                                 scale=self.scale, need_weights=need_weights)
        out = out.transpose(1, 2).reshape(batch, seq, width)
        return self.resid_dropout(self.c_proj(out)), weights


class GPT2MLP(nn.Module):
    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        inner = config.n_inner or 4 * config.n_embd
        self.c_fc = nn.Linear(config.n_embd, inner)
        self.c_proj = nn.Linear(inner, config.n_embd)
        self.act = activation(config.activation_function)
        self.dropout = Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class GPT2Block(nn.Module):
    def __init__(self, config: GPT2Config, layer_idx: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = GPT2Attention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(config)

    def forward(self, x, mask, cache, need_weights):
        attended, weights = self.attn(self.ln_1(x), mask, cache, need_weights)
        x = x + attended
        return x + self.mlp(self.ln_2(x)), weights


def init_gpt2(model: nn.Module, config: GPT2Config) -> None:
    """N(0, initializer_range) weights, the residual projections' scaled by 1/sqrt(2 *
    n_layer): each block adds two to the residual stream, whose variance would grow."""
    init_weights(model, config.initializer_range)
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            nn.init.normal_(p, std=config.initializer_range / math.sqrt(2 * config.n_layer))


class GPT2Model(DecoderModel):
    """The bare GPT-2: ids -> ln_f's hidden states (batch, seq, n_embd)."""

    config_class = GPT2Config
    base_model_prefix = "transformer"

    def __init__(self, config: GPT2Config, initialize: bool = True) -> None:
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(GPT2Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        if initialize:  # a head initialises it with itself (see init_weights)
            init_gpt2(self, config)

    def embed(self, input_ids: torch.Tensor,
              position_ids: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return self.drop(self.wte(input_ids) + self.wpe(position_ids)), {}

    def blocks(self) -> nn.ModuleList:
        return self.h

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln_f(x)


class GPT2LMHeadModel(CausalLMBase):
    config_class = GPT2Config
    base_model_prefix = "transformer"

    def __init__(self, config: GPT2Config) -> None:
        super().__init__(config)
        self.transformer = GPT2Model(config, initialize=False)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        init_gpt2(self, config)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.transformer.wte.weight


class GPT2ForSequenceClassification(SequenceClassifierBase):
    """GPT-2 with a scalar-per-label ``score`` head at the last token (a reward model)."""

    config_class = GPT2Config
    base_model_prefix = "transformer"  # loads a GPT2LMHeadModel checkpoint under a new head

    def __init__(self, config: GPT2Config) -> None:
        super().__init__(config)
        self.transformer = GPT2Model(config, initialize=False)
        self.score = nn.Linear(config.n_embd, config.num_labels, bias=False)
        init_gpt2(self, config)
