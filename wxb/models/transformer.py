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
and the config its fields (``MarianModel`` is the bare encoder-decoder, ``model.`` of the
translation model): a post-LN model saved here loads in ``transformers`` (and an
opus-mt checkpoint loads here). Marian writes the sinusoids as [all sin | all cos] rather than
interleaved, and so does this model. Fields of wxb's own: ``normalize_before`` and
``label_smoothing`` (the paper's 0.1 on the training loss). The layers are in
``wxb.models.transformer_layers``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
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
from wxb.models.transformer_layers import (
    DecoderLayer,
    EncoderLayer,
    TransformerDecoder,
    TransformerEncoder,
)
from wxb.nn import KVCache, activation


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
        check_token_ids(self, self.vocab_size, embedded=("pad_token_id",))
        check_token_ids(self, self.decoder_vocab_size, embedded=("pad_token_id",),
                        generated=("eos_token_id", "bos_token_id"))


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


class _MarianPreTrained(PreTrainedModel):
    config_class = TransformerConfig
    base_model_prefix = "model"

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


class MarianModel(_MarianPreTrained):
    """The bare encoder-decoder (Hugging Face's ``MarianModel``, the ``model.`` of the
    translation checkpoint): source and target ids -> the decoder's hidden states."""

    def __init__(self, config: TransformerConfig, initialize: bool = True) -> None:
        super().__init__(config)
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
        if initialize:  # the translation model initialises it with its own layer, once
            self.apply(self._init_weights)

    def memory_cache(self, memory: torch.Tensor, attention_mask: torch.Tensor | None,
                     use_cache: bool = True) -> TransformerCache:
        """A cache over the encoded source ``memory`` (batch, src, d_model): every decoder
        layer's keys and values of it, the source mask (batch, 1, 1, src) for attention (None
        when nothing is padded) and, with ``use_cache``, an empty self-attention cache."""
        kv = [layer.encoder_attn.keys_values(memory) for layer in self.decoder.layers]
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            mask = attention_mask[:, None, None, :].bool()
        return TransformerCache(KVCache(len(kv)) if use_cache else None, kv, mask)

    def forward(self, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None,
                encoder_outputs: BaseModelOutput | None = None,
                past_key_values: TransformerCache | None = None, use_cache: bool = False,
                output_attentions: bool = False,
                output_hidden_states: bool = False) -> Seq2SeqModelOutput:
        """input_ids (batch, src), right-padded with ``attention_mask``; decoder_input_ids
        (batch, tgt), or only the newest target ids when ``past_key_values`` (a
        TransformerCache from an earlier call with ``use_cache``) holds the earlier ones.
        ``encoder_outputs`` spares encoding the source again."""
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_ids, attention_mask, output_attentions,
                                           output_hidden_states)
        cache = past_key_values
        if cache is None:
            cache = self.memory_cache(encoder_outputs.last_hidden_state, attention_mask,
                                      use_cache)
        decoded = self.decoder(decoder_input_ids, cache.memory_kv, cache.memory_mask,
                               cache=cache.self_attn, output_attentions=output_attentions,
                               output_hidden_states=output_hidden_states)
        return Seq2SeqModelOutput.of(decoded, encoder_outputs, cache, use_cache)


class MarianMTModel(_MarianPreTrained):
    """The encoder-decoder Transformer with its output layer: translation.

    ``forward(input_ids, attention_mask, labels)`` trains: the decoder reads the labels shifted
    right (the start token first) and the loss is the cross-entropy of predicting each label,
    -100 ignored, smoothed by ``config.label_smoothing``. ``wxb.generation.generate(model,
    input_ids, attention_mask=..., num_beams=4)`` translates.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__(config)
        self.model = MarianModel(config, initialize=False)
        self.lm_head = nn.Linear(config.d_model, config.decoder_vocab_size, bias=False)
        self.register_buffer("final_logits_bias", torch.zeros(1, config.decoder_vocab_size))
        self.apply(self._init_weights)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.decoder.embed_tokens.weight

    # ---------------------------------------------------------------- the two halves

    def encode(self, input_ids: torch.Tensor,
               attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """The memory (batch, src, d_model) and the source mask (batch, src), or the memory
        alone when nothing is padded."""
        memory = self.model.encoder(input_ids, attention_mask).last_hidden_state
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
            cache = self.model.memory_cache(memory[0], memory[1] if len(memory) > 1 else None)
        hidden = self.model.decoder(decoder_input_ids, cache.memory_kv, cache.memory_mask,
                                    cache=cache.self_attn,
                                    position_ids=position_ids).last_hidden_state
        return self.lm_head(hidden) + self.final_logits_bias, cache

    def forward(self, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None,
                encoder_outputs: BaseModelOutput | None = None,
                past_key_values: TransformerCache | None = None, use_cache: bool = False,
                output_attentions: bool = False,
                output_hidden_states: bool = False) -> Seq2SeqLMOutput:
        """input_ids (batch, src), right-padded with ``attention_mask``; labels (batch, tgt),
        -100 on padding. Returns logits (batch, tgt, target vocab), the loss with labels, and
        ``MarianModel``'s extras (with ``output_attentions`` each decoder layer's
        cross-attention (batch, heads, tgt, src), ...)."""
        if decoder_input_ids is None:
            if labels is None:
                raise ConfigError("give labels (training) or decoder_input_ids")
            decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id,
                                                   self.config.decoder_start_token_id)
        out = self.model(input_ids, attention_mask, decoder_input_ids, encoder_outputs,
                         past_key_values, use_cache, output_attentions, output_hidden_states)
        logits = self.lm_head(out.last_hidden_state) + self.final_logits_bias
        loss = None
        if labels is not None:
            loss = seq2seq_loss(logits, labels, self.config.label_smoothing)
        return Seq2SeqLMOutput(
            loss=loss, logits=logits, past_key_values=out.past_key_values,
            decoder_hidden_states=out.decoder_hidden_states,
            decoder_attentions=out.decoder_attentions, cross_attentions=out.cross_attentions,
            encoder_last_hidden_state=out.encoder_last_hidden_state,
            encoder_hidden_states=out.encoder_hidden_states,
            encoder_attentions=out.encoder_attentions)
