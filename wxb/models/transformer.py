"""The 2017 Transformer (Vaswani et al., "Attention Is All You Need") for translation.

    source ids -> embed * sqrt(d) + sinusoidal positions -> N x [self-attention, feed-forward]
               -> memory
    target ids (shifted right) -> embed * sqrt(d) + positions
               -> N x [causal self-attention, attention over the memory, feed-forward]
               -> linear (tied to the target embeddings) -> next-token logits

Each sub-layer is wrapped as in the paper, ``x = LayerNorm(x + Dropout(sublayer(x)))``
(post-LN), or, with ``normalize_before``, as ``x = x + Dropout(sublayer(LayerNorm(x)))`` (pre-LN,
which trains without warmup tricks; then a last LayerNorm closes each stack).

Hugging Face's ``MarianMTModel`` is this very architecture, so the parameters carry its names
and the config its fields: a post-LN model saved here loads in ``transformers`` (and an
opus-mt checkpoint loads here). Marian writes the sinusoids as [all sin | all cos] rather than
interleaved, and so does this model. Fields of wxb's own: ``normalize_before`` and
``label_smoothing`` (the paper's 0.1 on the training loss).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from wxb.errors import ConfigError
from wxb.models.base import Config, PreTrainedModel
from wxb.models.outputs import Seq2SeqLMOutput, seq2seq_loss, shift_tokens_right
from wxb.nn import Dropout, KVCache, activation, attention, make_mask, sinusoidal_positions


@dataclass
class TransformerConfig(Config):
    model_type = "marian"
    is_encoder_decoder: ClassVar[bool] = True

    vocab_size: int = 8000  # the source's (and the target's, with shared embeddings)
    decoder_vocab_size: int | None = None  # the target's; None: vocab_size
    d_model: int = 512
    encoder_layers: int = 6
    decoder_layers: int = 6
    encoder_attention_heads: int = 8
    decoder_attention_heads: int = 8
    encoder_ffn_dim: int = 2048
    decoder_ffn_dim: int = 2048
    activation_function: str = "relu"
    dropout: float = 0.1  # on embeddings + positions and on every sub-layer's output
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    max_position_embeddings: int = 512
    scale_embedding: bool = True  # embeddings * sqrt(d_model), as in the paper
    share_encoder_decoder_embeddings: bool = True  # one table for both languages
    tie_word_embeddings: bool = True  # the output layer is the target embedding table
    normalize_before: bool = False  # pre-LN instead of the paper's post-LN
    label_smoothing: float = 0.0
    init_std: float = 0.02
    pad_token_id: int = 0
    eos_token_id: int = 1
    bos_token_id: int | None = None
    decoder_start_token_id: int = 0  # Marian starts decoding from the pad token

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.decoder_vocab_size is None:
            self.decoder_vocab_size = self.vocab_size
        if self.share_encoder_decoder_embeddings and self.decoder_vocab_size != self.vocab_size:
            raise ConfigError(f"share_encoder_decoder_embeddings needs one vocabulary, but "
                              f"vocab_size is {self.vocab_size} and decoder_vocab_size "
                              f"{self.decoder_vocab_size}; set it to false for two")
        for heads in (self.encoder_attention_heads, self.decoder_attention_heads):
            if self.d_model % heads:
                raise ConfigError(f"d_model {self.d_model} is not divisible by {heads} "
                                  "attention heads")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        activation(self.activation_function)


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

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        def attend(h):
            return self.self_attn(h, *self.self_attn.keys_values(h), mask)

        x, _ = self.sublayer(x, self.self_attn_layer_norm, attend)
        return self.sublayer(x, self.final_layer_norm, self.feed_forward)[0]


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
                need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (batch, new, d_model), the newest ``new`` target positions; ``cache`` holds the
        earlier ones' keys and values. Returns x and the cross-attention weights (or None)."""
        def attend_self(h):
            k, v = self.self_attn.keys_values(h)
            if cache is not None:
                k, v = cache.update(index, k, v)
            # The queries are the last `new` of k_len positions; each sees itself and before.
            mask = make_mask(None, h.shape[1], k.shape[2], causal=True)
            return self.self_attn(h, k, v, mask, is_causal=mask is None and h.shape[1] > 1)

        def attend_memory(h):
            return self.encoder_attn(h, *memory_kv, memory_mask, need_weights=need_weights)

        x, _ = self.sublayer(x, self.self_attn_layer_norm, attend_self)
        x, weights = self.sublayer(x, self.encoder_attn_layer_norm, attend_memory)
        return self.sublayer(x, self.final_layer_norm, self.feed_forward)[0], weights


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


class TransformerEncoder(_Stack):
    def forward(self, input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None) -> torch.Tensor:
        """(batch, src) ids -> memory (batch, src, d_model)."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        x = self.embed(input_ids, positions)
        mask = make_mask(attention_mask, input_ids.shape[1], input_ids.shape[1], causal=False)
        for layer in self.layers:
            x = layer(x, mask)
        return self.close(x)


class TransformerDecoder(_Stack):
    def forward(self, input_ids: torch.Tensor, memory_kv: list[tuple[torch.Tensor, torch.Tensor]],
                memory_mask: torch.Tensor | None, *, cache: KVCache | None = None,
                position_ids: torch.Tensor | None = None, need_weights: bool = False
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """(batch, new) target ids -> (batch, new, d_model), and each layer's cross-attention
        weights (batch, heads, new, src) when ``need_weights``."""
        if position_ids is None:
            start = cache.get_seq_length() if cache is not None else 0
            position_ids = torch.arange(start, start + input_ids.shape[1],
                                        device=input_ids.device)[None]
        x = self.embed(input_ids, position_ids)
        weights = []
        for index, layer in enumerate(self.layers):
            x, w = layer(x, memory_kv[index], memory_mask, cache, index, need_weights)
            weights.append(w)
        return self.close(x), tuple(weights) if need_weights else None


class TransformerModel(nn.Module):
    """Encoder and decoder (Hugging Face's ``MarianModel``: the ``model.`` of the checkpoint)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        d, pad = config.d_model, config.pad_token_id
        if config.share_encoder_decoder_embeddings:
            self.shared = nn.Embedding(config.vocab_size, d, pad)
            source = target = self.shared
        else:
            source = nn.Embedding(config.vocab_size, d, pad)
            target = nn.Embedding(config.decoder_vocab_size, d, pad)
        self.encoder = TransformerEncoder(
            config, source, [EncoderLayer(config) for _ in range(config.encoder_layers)])
        self.decoder = TransformerDecoder(
            config, target, [DecoderLayer(config) for _ in range(config.decoder_layers)])


class TransformerCache:
    """What decoding keeps between steps: the decoder's self-attention keys and values, and
    the keys and values of the memory for every layer (computed once)."""

    def __init__(self, self_attn: KVCache, memory_kv: list[tuple[torch.Tensor, torch.Tensor]],
                 memory_mask: torch.Tensor | None) -> None:
        self.self_attn, self.memory_kv, self.memory_mask = self_attn, memory_kv, memory_mask

    def reorder(self, beam_idx: torch.Tensor) -> None:
        """Keep rows ``beam_idx`` (beam search)."""
        self.self_attn.reorder(beam_idx)
        self.memory_kv = [(k.index_select(0, beam_idx), v.index_select(0, beam_idx))
                          for k, v in self.memory_kv]
        if self.memory_mask is not None:
            self.memory_mask = self.memory_mask.index_select(0, beam_idx)


class MarianMTModel(PreTrainedModel):
    """The encoder-decoder Transformer with its output layer: translation.

    ``forward(input_ids, attention_mask, labels)`` trains: the decoder reads the labels shifted
    right (the start token first) and the loss is the cross-entropy of predicting each label,
    -100 ignored, smoothed by ``config.label_smoothing``. ``wxb.generation.generate(model,
    input_ids, attention_mask=..., num_beams=4)`` translates.
    """

    config_class = TransformerConfig

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__(config)
        self.model = TransformerModel(config)
        self.lm_head = nn.Linear(config.d_model, config.decoder_vocab_size, bias=False)
        self.register_buffer("final_logits_bias", torch.zeros(1, config.decoder_vocab_size))
        self.apply(self._init_weights)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.decoder.embed_tokens.weight

    def _init_weights(self, module: nn.Module) -> None:
        """N(0, init_std) weights, zero biases, zero padding embedding (Hugging Face's)."""
        std = self.config.init_std
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                nn.init.zeros_(module.weight[module.padding_idx])

    # ---------------------------------------------------------------- the two halves

    def encode(self, input_ids: torch.Tensor,
               attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """The memory (batch, src, d_model) and the source mask (batch, src), or the memory
        alone when nothing is padded."""
        memory = self.model.encoder(input_ids, attention_mask)
        if attention_mask is None or bool(attention_mask.all()):
            return (memory,)
        return memory, attention_mask

    def decode(self, decoder_input_ids: torch.Tensor, memory: tuple[torch.Tensor, ...],
               cache: TransformerCache | None = None, position_ids: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, TransformerCache]:
        """One decoding step: logits (batch, new, target vocab) of the tokens that follow
        ``decoder_input_ids`` (batch, new), and the cache for the next step (created on the
        first)."""
        if cache is None:
            cache = TransformerCache(KVCache(self.config.decoder_layers),
                                     *self._memory_keys_values(memory))
        hidden, _ = self.model.decoder(decoder_input_ids, cache.memory_kv, cache.memory_mask,
                                       cache=cache.self_attn, position_ids=position_ids)
        return self.lm_head(hidden) + self.final_logits_bias, cache

    def _memory_keys_values(self, memory: tuple[torch.Tensor, ...]
                            ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]],
                                       torch.Tensor | None]:
        """Every decoder layer's keys and values of the memory, and the source mask (batch,
        1, 1, src) for attention (None when nothing is padded)."""
        kv = [layer.encoder_attn.keys_values(memory[0]) for layer in self.model.decoder.layers]
        mask = memory[1][:, None, None, :].bool() if len(memory) > 1 else None
        return kv, mask

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None,
                output_attentions: bool = False) -> Seq2SeqLMOutput:
        """input_ids (batch, src), right-padded with ``attention_mask``; labels (batch, tgt),
        -100 on padding. Returns logits (batch, tgt, target vocab), the loss with labels, and
        with ``output_attentions`` each decoder layer's cross-attention (batch, heads, tgt,
        src)."""
        if decoder_input_ids is None:
            if labels is None:
                raise ConfigError("give labels (training) or decoder_input_ids")
            decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id,
                                                   self.config.decoder_start_token_id)
        kv, mask = self._memory_keys_values(self.encode(input_ids, attention_mask))
        hidden, weights = self.model.decoder(decoder_input_ids, kv, mask,
                                             need_weights=output_attentions)
        logits = self.lm_head(hidden) + self.final_logits_bias
        loss = None
        if labels is not None:
            loss = seq2seq_loss(logits, labels, self.config.label_smoothing)
        return Seq2SeqLMOutput(loss=loss, logits=logits, cross_attentions=weights)
