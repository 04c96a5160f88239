"""T5 (Raffel et al., 2020, "Exploring the Limits of Transfer Learning with a Unified
Text-to-Text Transformer"): an encoder-decoder Transformer with relative position biases.

    source ids -> shared embeddings -> N x [RMS norm, self-attention (+ bias), residual;
                                            RMS norm, feed-forward, residual] -> RMS norm
    target ids (shifted right, the pad token first) -> shared embeddings
               -> M x [self-attention (causal bias), attention over the memory, feed-forward]
               -> RMS norm -> (* d_model^-0.5 when tied, v1.0) -> lm_head -> logits

What differs from the 2017 Transformer: no position embeddings; instead each attention adds a
learned bias per head to its scores, looked up by the bucket of the distance key - query
(exact for short distances, logarithmic up to ``relative_attention_max_distance``; both signs
in the encoder, only the past in the decoder). Only the first layer of each stack has the
table; the bias it computes is shared by the rest. Scores are not scaled by 1/sqrt(d) (the
initialisation absorbs it), norms are pre-LN RMS norms without bias, linears have no bias.
v1.0 uses ReLU and an output layer tied to the embeddings; v1.1 and Flan-T5 use gated GELU
(``gelu_new``) and an untied head. Parameter names and config fields are Hugging Face's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from wxb.errors import ConfigError
from wxb.models.base import Config, PreTrainedModel, check_token_ids
from wxb.models.outputs import (
    BaseModelOutput,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
    seq2seq_loss,
    shift_tokens_right,
)
from wxb.nn import Dropout, KVCache, RMSNorm, activation, relative_position_bucket
from wxb.nn.feedforward import ACTIVATIONS


@dataclass
class T5Config(Config):
    model_type = "t5"
    is_encoder_decoder: ClassVar[bool] = True

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64  # per head; heads * d_kv need not be d_model
    d_ff: int = 2048
    num_layers: int = 6
    num_decoder_layers: int | None = None  # None: num_layers
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    initializer_factor: float = 1.0
    feed_forward_proj: str = "relu"  # "relu" (v1.0), "gated-gelu" (v1.1, Flan-T5), "gated-silu"
    tie_word_embeddings: bool = True
    scale_decoder_outputs: bool | None = None  # * d_model^-0.5 before lm_head; None: tied
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0  # T5 starts decoding from the pad token

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_decoder_layers is None:
            self.num_decoder_layers = self.num_layers
        if self.scale_decoder_outputs is None:
            self.scale_decoder_outputs = self.tie_word_embeddings
        parts = self.feed_forward_proj.split("-")
        if (len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated")
                or parts[-1] not in ACTIVATIONS):
            raise ConfigError(f"T5Config.feed_forward_proj {self.feed_forward_proj!r} is not "
                              "supported; use ACT or gated-ACT with ACT one of "
                              f"{', '.join(ACTIVATIONS)} (T5 v1.0: relu; v1.1 and Flan-T5: "
                              "gated-gelu)")
        if self.relative_attention_num_buckets < 2:
            raise ConfigError("relative_attention_num_buckets must be at least 2, got "
                              f"{self.relative_attention_num_buckets}")
        check_token_ids(self, self.vocab_size, embedded=("pad_token_id",),
                        generated=("eos_token_id", "decoder_start_token_id"))

    @property
    def is_gated_act(self) -> bool:
        return self.feed_forward_proj.startswith("gated-")

    @property
    def dense_act_fn(self) -> str:
        # Hugging Face's: "gated-gelu" means the tanh approximation.
        name = self.feed_forward_proj.split("-")[-1]
        return "gelu_new" if self.feed_forward_proj == "gated-gelu" else name

    @property
    def decoder_vocab_size(self) -> int:  # what generation reads: one vocabulary
        return self.vocab_size


class T5Attention(nn.Module):
    """Multi-head attention without scaling or biases; with ``has_relative_attention_bias``
    the table (buckets, heads) of the position bias."""

    def __init__(self, config: T5Config, has_relative_attention_bias: bool = False) -> None:
        super().__init__()
        self.n_heads, self.dropout = config.num_heads, config.dropout_rate
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.relative_attention_max_distance
        inner = config.num_heads * config.d_kv
        self.q = nn.Linear(config.d_model, inner, bias=False)
        self.k = nn.Linear(config.d_model, inner, bias=False)
        self.v = nn.Linear(config.d_model, inner, bias=False)
        self.o = nn.Linear(inner, config.d_model, bias=False)
        if has_relative_attention_bias:
            self.relative_attention_bias = nn.Embedding(self.num_buckets, self.n_heads)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, seq, heads * d_kv) -> (batch, heads, seq, d_kv)."""
        return x.unflatten(-1, (self.n_heads, -1)).transpose(1, 2)

    def keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split(self.k(source)), self.split(self.v(source))

    def compute_bias(self, query_start: int, query_length: int, key_length: int,
                     bidirectional: bool, device: torch.device) -> torch.Tensor:
        """(1, heads, query_length, key_length): the bias of queries at positions
        query_start .. query_start + query_length - 1 over keys at 0 .. key_length - 1."""
        query = torch.arange(query_start, query_start + query_length, device=device)[:, None]
        key = torch.arange(key_length, device=device)[None, :]
        buckets = relative_position_bucket(key - query, bidirectional, self.num_buckets,
                                           self.max_distance)
        return self.relative_attention_bias(buckets).permute(2, 0, 1)[None]

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        """x (batch, q_len, d_model); k, v (batch, heads, k_len, d_kv); bias added to the
        scores (position bias and masks, broadcast to (batch, heads, q_len, k_len))."""
        out = F.scaled_dot_product_attention(
            self.split(self.q(x)), k, v, attn_mask=bias, scale=1.0,
            dropout_p=self.dropout if self.training else 0.0)
        return self.o(out.transpose(1, 2).flatten(2))


class T5LayerSelfAttention(nn.Module):
    def __init__(self, config: T5Config, has_relative_attention_bias: bool) -> None:
        super().__init__()
        self.SelfAttention = T5Attention(config, has_relative_attention_bias)
        self.layer_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.dropout = Dropout(config.dropout_rate)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, cache: KVCache | None,
                index: int) -> torch.Tensor:
        h = self.layer_norm(x)
        k, v = self.SelfAttention.keys_values(h)
        if cache is not None:
            k, v = cache.update(index, k, v)
        return x + self.dropout(self.SelfAttention(h, k, v, bias))


class T5LayerCrossAttention(nn.Module):
    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.EncDecAttention = T5Attention(config)
        self.layer_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.dropout = Dropout(config.dropout_rate)

    def forward(self, x: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor],
                bias: torch.Tensor | None) -> torch.Tensor:
        return x + self.dropout(self.EncDecAttention(self.layer_norm(x), *memory_kv, bias))


class T5DenseActDense(nn.Module):
    """wo(act(wi x)) (v1.0) or, gated, wo(act(wi_0 x) * wi_1 x) (v1.1)."""

    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.gated = config.is_gated_act
        if self.gated:
            self.wi_0 = nn.Linear(config.d_model, config.d_ff, bias=False)
            self.wi_1 = nn.Linear(config.d_model, config.d_ff, bias=False)
        else:
            self.wi = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)
        self.act = activation(config.dense_act_fn)
        self.dropout = Dropout(config.dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.wi_0(x)) * self.wi_1(x) if self.gated else self.act(self.wi(x))
        return self.wo(self.dropout(h).to(self.wo.weight.dtype))


class T5LayerFF(nn.Module):
    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.DenseReluDense = T5DenseActDense(config)
        self.layer_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.dropout = Dropout(config.dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.DenseReluDense(self.layer_norm(x)))


class T5Block(nn.Module):
    """``layer``: self-attention, (decoder: attention over the memory), feed-forward."""

    def __init__(self, config: T5Config, is_decoder: bool, first: bool) -> None:
        super().__init__()
        layers = [T5LayerSelfAttention(config, has_relative_attention_bias=first)]
        if is_decoder:
            layers.append(T5LayerCrossAttention(config))
        self.layer = nn.ModuleList([*layers, T5LayerFF(config)])


def _padding_bias(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(batch, 1, 1, k_len): 0 where ``mask`` (batch, k_len) is 1, the dtype's minimum where
    it is 0; None when nothing is padded."""
    if mask is None or bool(mask.all()):
        return None
    mask = mask[:, None, None, :]
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
        mask == 0, torch.finfo(dtype).min)


class T5Stack(nn.Module):
    """The encoder or the decoder: embeddings (shared), blocks, the final RMS norm."""

    def __init__(self, config: T5Config, embed_tokens: nn.Embedding, is_decoder: bool) -> None:
        super().__init__()
        self.is_decoder = is_decoder
        self.embed_tokens = embed_tokens
        count = config.num_decoder_layers if is_decoder else config.num_layers
        self.block = nn.ModuleList([T5Block(config, is_decoder, i == 0) for i in range(count)])
        self.final_layer_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.dropout = Dropout(config.dropout_rate)

    def self_bias(self, start: int, q_len: int, k_len: int, mask: torch.Tensor | None,
                  dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The first block's position bias with the masks folded in, for every block."""
        attn = self.block[0].layer[0].SelfAttention
        bias = attn.compute_bias(start, q_len, k_len, not self.is_decoder, device).to(dtype)
        if self.is_decoder:  # query i (at start + i) sees keys up to start + i
            future = torch.ones(q_len, k_len, dtype=torch.bool, device=device).triu(start + 1)
            bias = bias.masked_fill(future, torch.finfo(dtype).min)
        padding = _padding_bias(mask, dtype)
        return bias if padding is None else bias + padding

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                memory_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
                memory_bias: torch.Tensor | None = None, cache: KVCache | None = None,
                output_hidden_states: bool = False) -> BaseModelOutput:
        """(batch, new) ids -> last_hidden_state (batch, new, d_model). The decoder's new ids
        follow the ``cache``'s earlier ones; ``attention_mask`` covers every key position."""
        x = self.dropout(self.embed_tokens(input_ids))
        start = cache.get_seq_length() if cache is not None else 0
        k_len = start + input_ids.shape[1]
        bias = self.self_bias(start, input_ids.shape[1], k_len, attention_mask, x.dtype,
                              x.device)
        hidden = []
        for index, block in enumerate(self.block):
            hidden.append(x)
            x = block.layer[0](x, bias, cache, index)
            if self.is_decoder:
                x = block.layer[1](x, memory_kv[index], memory_bias)
            x = block.layer[-1](x)
        x = self.dropout(self.final_layer_norm(x))
        return BaseModelOutput(x, tuple([*hidden, x]) if output_hidden_states else None)


class T5Cache:
    """What decoding keeps: the decoder's self-attention keys and values, each block's keys and
    values of the memory (computed once) and the memory's padding bias."""

    def __init__(self, self_attn: KVCache | None, memory_kv: list[tuple[torch.Tensor, ...]],
                 memory_bias: torch.Tensor | None) -> None:
        self.self_attn, self.memory_kv, self.memory_bias = self_attn, memory_kv, memory_bias

    def reorder(self, beam_idx: torch.Tensor) -> None:
        """Keep rows ``beam_idx`` (beam search)."""
        self.self_attn.reorder(beam_idx)
        self.memory_kv = [(k.index_select(0, beam_idx), v.index_select(0, beam_idx))
                          for k, v in self.memory_kv]
        if self.memory_bias is not None:
            self.memory_bias = self.memory_bias.index_select(0, beam_idx)


class _T5PreTrained(PreTrainedModel):
    config_class = T5Config

    def _init_weights(self, module: nn.Module) -> None:
        """Hugging Face's initialisation: each matrix's std is 1/sqrt(its fan-in) (for q, of
        d_model * d_kv, which stands in for the missing 1/sqrt(d_kv) of the scores)."""
        c, f = self.config, self.config.initializer_factor
        if isinstance(module, RMSNorm):
            nn.init.constant_(module.weight, f)
        elif isinstance(module, T5DenseActDense):
            for name in ("wi", "wi_0", "wi_1"):
                if hasattr(module, name):
                    nn.init.normal_(getattr(module, name).weight, std=f * c.d_model ** -0.5)
            nn.init.normal_(module.wo.weight, std=f * c.d_ff ** -0.5)
        elif isinstance(module, T5Attention):
            nn.init.normal_(module.q.weight, std=f * (c.d_model * c.d_kv) ** -0.5)
            nn.init.normal_(module.k.weight, std=f * c.d_model ** -0.5)
            nn.init.normal_(module.v.weight, std=f * c.d_model ** -0.5)
            nn.init.normal_(module.o.weight, std=f * (c.num_heads * c.d_kv) ** -0.5)
            if hasattr(module, "relative_attention_bias"):
                nn.init.normal_(module.relative_attention_bias.weight, std=f * c.d_model ** -0.5)
        elif module is self:
            nn.init.normal_(module.shared.weight, std=f)
            if hasattr(module, "lm_head") and not c.tie_word_embeddings:
                nn.init.normal_(module.lm_head.weight, std=f)


class T5EncoderModel(_T5PreTrained):
    """The encoder alone: ids -> last_hidden_state (batch, src, d_model)."""

    def __init__(self, config: T5Config) -> None:
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = T5Stack(config, self.shared, is_decoder=False)
        self.apply(self._init_weights)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False) -> BaseModelOutput:
        return self.encoder(input_ids, attention_mask, output_hidden_states=output_hidden_states)


class T5Model(_T5PreTrained):
    """The bare encoder-decoder: source and target ids -> the decoder's hidden states."""

    def __init__(self, config: T5Config) -> None:
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = T5Stack(config, self.shared, is_decoder=False)
        self.decoder = T5Stack(config, self.shared, is_decoder=True)
        if type(self) is T5Model:
            self.apply(self._init_weights)

    def memory_cache(self, memory: torch.Tensor, attention_mask: torch.Tensor | None,
                     use_cache: bool = True) -> T5Cache:
        """Every decoder block's keys and values of the encoded ``memory`` (batch, src,
        d_model), its padding bias and, with ``use_cache``, an empty self-attention cache."""
        kv = [block.layer[1].EncDecAttention.keys_values(memory) for block in self.decoder.block]
        return T5Cache(KVCache(len(kv)) if use_cache else None, kv,
                       _padding_bias(attention_mask, memory.dtype))

    def encode(self, input_ids: torch.Tensor,
               attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """The memory (batch, src, d_model) and the source mask, or the memory alone when
        nothing is padded (what ``wxb.generate`` passes back to ``decode``)."""
        memory = self.encoder(input_ids, attention_mask).last_hidden_state
        if attention_mask is None or bool(attention_mask.all()):
            return (memory,)
        return memory, attention_mask

    def get_encoder(self) -> T5Stack:
        return self.encoder

    def run(self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask,
            encoder_outputs, past_key_values, use_cache, output_hidden_states
            ) -> tuple[BaseModelOutput, BaseModelOutput, T5Cache]:
        """Encode (unless ``encoder_outputs`` is given) and decode; the cache is created when
        none is passed."""
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_ids, attention_mask,
                                           output_hidden_states=output_hidden_states)
        cache = past_key_values
        if cache is None:
            cache = self.memory_cache(encoder_outputs.last_hidden_state, attention_mask,
                                      use_cache)
        decoded = self.decoder(decoder_input_ids, decoder_attention_mask, cache.memory_kv,
                               cache.memory_bias, cache.self_attn, output_hidden_states)
        return encoder_outputs, decoded, cache

    def forward(self, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None,
                decoder_attention_mask: torch.Tensor | None = None,
                encoder_outputs: BaseModelOutput | None = None,
                past_key_values: T5Cache | None = None, use_cache: bool = False,
                output_hidden_states: bool = False) -> Seq2SeqModelOutput:
        """input_ids (batch, src) with ``attention_mask``; decoder_input_ids (batch, tgt), or
        only the newest when ``past_key_values`` (from a call with ``use_cache``) holds the
        earlier ones; ``decoder_attention_mask`` covers all target positions so far."""
        enc, dec, cache = self.run(input_ids, attention_mask, decoder_input_ids,
                                   decoder_attention_mask, encoder_outputs, past_key_values,
                                   use_cache, output_hidden_states)
        return Seq2SeqModelOutput(
            last_hidden_state=dec.last_hidden_state,
            past_key_values=cache if use_cache else None,
            decoder_hidden_states=dec.hidden_states,
            encoder_last_hidden_state=enc.last_hidden_state,
            encoder_hidden_states=enc.hidden_states)


class T5ForConditionalGeneration(T5Model):
    """T5 with its output layer: text to text.

    ``forward(input_ids, attention_mask, labels)`` trains (the decoder reads the labels shifted
    right, -100 ignored in the loss); ``wxb.generate(model, input_ids, num_beams=4)`` decodes.
    """

    def __init__(self, config: T5Config) -> None:
        super().__init__(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.shared.weight

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.config.scale_decoder_outputs:  # v1.0: the tied embeddings' rescale
            hidden = hidden * self.config.d_model ** -0.5
        return self.lm_head(hidden)

    def decode(self, decoder_input_ids: torch.Tensor, memory: tuple[torch.Tensor, ...],
               cache: T5Cache | None = None, position_ids: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, T5Cache]:
        """One decoding step: logits (batch, new, vocab) after ``decoder_input_ids`` (batch,
        new) and the cache for the next (created on the first). The positions are the
        cache's length on (relative biases need no ``position_ids``)."""
        if cache is None:
            cache = self.memory_cache(memory[0], memory[1] if len(memory) > 1 else None)
        hidden = self.decoder(decoder_input_ids, None, cache.memory_kv, cache.memory_bias,
                              cache.self_attn).last_hidden_state
        return self.head(hidden), cache

    def forward(self, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None,
                decoder_attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None,
                encoder_outputs: BaseModelOutput | None = None,
                past_key_values: T5Cache | None = None, use_cache: bool = False,
                output_hidden_states: bool = False) -> Seq2SeqLMOutput:
        """Returns logits (batch, tgt, vocab), the loss with ``labels`` (batch, tgt; -100 on
        padding) and T5Model's extras."""
        if decoder_input_ids is None:
            if labels is None:
                raise ConfigError("give labels (training) or decoder_input_ids")
            decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id,
                                                   self.config.decoder_start_token_id)
        enc, dec, cache = self.run(input_ids, attention_mask, decoder_input_ids,
                                   decoder_attention_mask, encoder_outputs, past_key_values,
                                   use_cache, output_hidden_states)
        logits = self.head(dec.last_hidden_state)
        loss = seq2seq_loss(logits, labels) if labels is not None else None
        return Seq2SeqLMOutput(
            loss=loss, logits=logits, past_key_values=cache if use_cache else None,
            decoder_hidden_states=dec.hidden_states,
            encoder_last_hidden_state=enc.last_hidden_state,
            encoder_hidden_states=enc.hidden_states)
