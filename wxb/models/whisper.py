"""Whisper (Radford et al., 2022, "Robust Speech Recognition via Large-Scale Weak Supervision"):
a pre-LN encoder-decoder Transformer from log-mel spectrograms to text tokens.

    log-mel (batch, 80 mels, 3000 frames = 30 s)
        -> conv1 (k 3, pad 1) -> GELU -> conv2 (k 3, stride 2, pad 1) -> GELU   (1500 steps)
        -> + sinusoidal positions -> N x [LN, self-attention, residual; LN, MLP, residual]
        -> LN -> the memory (batch, 1500, d_model)
    tokens (<|startoftranscript|> <|en|> <|transcribe|> <|notimestamps|> ...)
        -> embeddings + learned positions
        -> M x [LN, causal self-attention; LN, attention over the memory; LN, MLP]
        -> LN -> proj_out (tied to the token embeddings) -> next-token logits

The blocks are the 2017 Transformer's, wrapped pre-LN, so the layers are wxb's
(``wxb.models.transformer_layers``, with Hugging Face's names, which Whisper shares with
Marian/BART) and the cache is the Transformer's: the decoder's own keys and values grow by
one step at a time, those of the memory are computed once per audio. What is Whisper's own:

- the convolutional front end, which halves the frame rate (100 -> 50 per second);
- the encoder's positions: a fixed sinusoid table stored in the checkpoint (Hugging Face keeps
  it as the frozen parameter ``encoder.embed_positions.weight``), with openai's spacing of the
  frequencies (see ``whisper_sinusoids``);
- ``k_proj`` has no bias: a bias on the keys adds the same amount, q . b, to every score of one
  query, which the softmax cancels, so openai dropped it;
- the decoder's positions are learned (``decoder.embed_positions``, max_target_positions rows);
- no embedding scale: ``scale_embedding`` is in the config, but, as in ``transformers``, the
  model never multiplies by sqrt(d_model).

Parameter names and config fields are Hugging Face's (``WhisperForConditionalGeneration``,
``model.encoder.conv1.weight``, ..., ``proj_out.weight``), so its checkpoints load both ways.
Decoding with Whisper's prompt, timestamps and long audio is ``wxb.generation.whisper``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from wxb.errors import ConfigError
from wxb.models.base import Config, PreTrainedModel, check_token_ids
from wxb.models.outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
    seq2seq_loss,
    shift_tokens_right,
)
from wxb.models.transformer import TransformerCache
from wxb.models.transformer_layers import Attention, DecoderLayer, EncoderLayer
from wxb.nn import Dropout, KVCache, activation


@dataclass
class WhisperConfig(Config):
    """Hugging Face's WhisperConfig fields and defaults (whisper-tiny's sizes); the special ids
    are those of the English-only vocabulary. Decoding settings that real checkpoints keep in
    ``generation_config.json`` (languages, tasks, timestamps) are
    ``wxb.generation.whisper.WhisperGenerationConfig``."""

    model_type = "whisper"
    is_encoder_decoder: ClassVar[bool] = True
    normalize_before: ClassVar[bool] = True  # what wxb's Transformer layers read: pre-LN

    vocab_size: int = 51865
    num_mel_bins: int = 80
    encoder_layers: int = 4
    encoder_attention_heads: int = 6
    decoder_layers: int = 4
    decoder_attention_heads: int = 6
    decoder_ffn_dim: int = 1536
    encoder_ffn_dim: int = 1536
    encoder_layerdrop: float = 0.0  # training: skip each layer with this probability
    decoder_layerdrop: float = 0.0
    decoder_start_token_id: int = 50257  # <|startoftranscript|>
    use_cache: bool = True
    activation_function: str = "gelu"
    d_model: int = 384
    dropout: float = 0.0
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    init_std: float = 0.02
    scale_embedding: bool = False  # read and written, unused (as in transformers' Whisper)
    max_source_positions: int = 1500  # encoder steps: 2 x this many mel frames in
    max_target_positions: int = 448
    pad_token_id: int = 50256
    bos_token_id: int = 50256
    eos_token_id: int = 50256
    suppress_tokens: list[int] | None = None
    begin_suppress_tokens: list[int] | None = field(
        default_factory=lambda: [220, 50256])  # " " and <|endoftext|>, at the first step
    forced_decoder_ids: list[list[int | None]] | None = None  # older checkpoints' prompt
    tie_word_embeddings: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        for heads in (self.encoder_attention_heads, self.decoder_attention_heads):
            if self.d_model % heads:
                raise ConfigError(f"WhisperConfig: d_model {self.d_model} is not divisible by "
                                  f"{heads} attention heads")
        if self.d_model % 2 or self.d_model < 4:
            raise ConfigError(f"WhisperConfig: d_model must be even and at least 4 (the "
                              f"sinusoid table pairs sines and cosines), got {self.d_model}")
        for name in ("max_source_positions", "max_target_positions", "num_mel_bins"):
            if getattr(self, name) < 1:
                raise ConfigError(f"WhisperConfig: {name} must be at least 1, got "
                                  f"{getattr(self, name)}")
        activation(self.activation_function)
        check_token_ids(self, self.vocab_size, embedded=("pad_token_id",),
                        generated=("eos_token_id", "bos_token_id", "decoder_start_token_id"))

    @property
    def decoder_vocab_size(self) -> int:  # what generation reads: one vocabulary
        return self.vocab_size

    @property
    def max_position_embeddings(self) -> int:  # the decoder's window, as generation reads it
        return self.max_target_positions

    @property
    def num_frames(self) -> int:
        """Mel frames per input: conv2's stride 2 turns them into max_source_positions steps
        (3000 frames = 30 s at 100 frames a second, for every released Whisper)."""
        return 2 * self.max_source_positions


def whisper_sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """(length, channels): [sin | cos] of position x frequency, Whisper's encoder positions.

    openai spaces the channels // 2 frequencies geometrically from 1 down to exactly
    1 / max_timescale (an increment of log(max_timescale) / (channels // 2 - 1)), where the
    2017 paper's table (``wxb.nn.sinusoidal_positions``) stops one step short of it; checkpoints
    store the table, so the difference matters only for a model built from scratch.
    """
    increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-increment * torch.arange(channels // 2, dtype=torch.float32))
    angles = torch.arange(length, dtype=torch.float32)[:, None] * inv_timescales[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def _without_key_bias(attn: Attention) -> Attention:
    """Whisper's attention: ``k_proj`` without its bias (softmax cancels it, see above)."""
    attn.k_proj = nn.Linear(attn.k_proj.in_features, attn.k_proj.out_features, bias=False)
    return attn


def _collected(values: list[torch.Tensor], wanted: bool) -> tuple[torch.Tensor, ...] | None:
    return tuple(values) if wanted else None


def _dropped(layerdrop: float, training: bool) -> bool:
    """LayerDrop (Fan et al., 2019): while training, skip a whole layer with this probability."""
    return training and layerdrop > 0.0 and bool(torch.rand([]) < layerdrop)


class WhisperEncoder(nn.Module):
    """log-mel (batch, num_mel_bins, 2 x max_source_positions) -> (batch, max_source_positions,
    d_model)."""

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__()
        d = config.d_model
        self.num_frames, self.layerdrop = config.num_frames, config.encoder_layerdrop
        # Both convolutions keep their biases, and only the second has stride 2: the course's
        # hand-written copy (2025 day 23) used stride 2 twice and no biases, which quarters the
        # frame rate and cannot load openai's weights.
        self.conv1 = nn.Conv1d(config.num_mel_bins, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(config.max_source_positions, d)
        self.embed_positions.requires_grad_(False)  # a fixed table, kept in the checkpoint
        self.layers = nn.ModuleList(
            [EncoderLayer(config) for _ in range(config.encoder_layers)])
        for layer in self.layers:
            _without_key_bias(layer.self_attn)
        self.layer_norm = nn.LayerNorm(d)
        self.drop = Dropout(config.dropout)

    def forward(self, input_features: torch.Tensor, output_attentions: bool = False,
                output_hidden_states: bool = False) -> BaseModelOutput:
        """The memory, ``last_hidden_state`` (batch, steps, d_model); hidden states are each
        layer's input and the memory; attentions (batch, heads, steps, steps) per layer."""
        if input_features.dim() != 3 or input_features.shape[-1] != self.num_frames:
            raise ConfigError(
                f"Whisper's encoder takes log-mel features (batch, {self.conv1.in_channels} "
                f"mels, {self.num_frames} frames), got shape {tuple(input_features.shape)}; pad "
                f"or trim the audio to {self.num_frames} frames ({self.num_frames / 100:g} s)")
        x = F.gelu(self.conv1(input_features.to(self.conv1.weight.dtype)))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        x = self.drop(x + self.embed_positions.weight)
        hidden, weights = [], []
        for layer in self.layers:
            hidden.append(x)
            if _dropped(self.layerdrop, self.training):
                continue
            x, w = layer(x, None, output_attentions)
            weights.append(w)
        x = self.layer_norm(x)
        return BaseModelOutput(x, _collected([*hidden, x], output_hidden_states),
                               _collected(weights, output_attentions))


class WhisperDecoder(nn.Module):
    """Token ids (batch, new) after the cache's earlier ones, over the memory -> (batch, new,
    d_model)."""

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__()
        d = config.d_model
        self.layerdrop = config.decoder_layerdrop
        self.embed_tokens = nn.Embedding(config.vocab_size, d, config.pad_token_id)
        self.embed_positions = nn.Embedding(config.max_target_positions, d)
        self.layers = nn.ModuleList(
            [DecoderLayer(config) for _ in range(config.decoder_layers)])
        for layer in self.layers:
            _without_key_bias(layer.self_attn)
            _without_key_bias(layer.encoder_attn)
        self.layer_norm = nn.LayerNorm(d)
        self.drop = Dropout(config.dropout)

    def forward(self, input_ids: torch.Tensor,
                memory_kv: list[tuple[torch.Tensor, torch.Tensor]], *,
                cache: KVCache | None = None, position_ids: torch.Tensor | None = None,
                output_attentions: bool = False, output_hidden_states: bool = False
                ) -> BaseModelOutputWithPastAndCrossAttentions:
        """``memory_kv``: each layer's keys and values of the memory; ``position_ids`` (batch,
        new) default to the cache's length on."""
        if position_ids is None:
            start = cache.get_seq_length() if cache is not None else 0
            position_ids = torch.arange(start, start + input_ids.shape[1],
                                        device=input_ids.device)[None]
        last = int(position_ids.max())
        if last >= self.embed_positions.num_embeddings:
            raise ConfigError(f"decoder position {last} is past max_target_positions "
                              f"{self.embed_positions.num_embeddings}; shorten the prompt or "
                              "ask for fewer new tokens")
        x = self.drop(self.embed_tokens(input_ids) + self.embed_positions(position_ids))
        hidden, self_weights, cross_weights = [], [], []
        for index, layer in enumerate(self.layers):
            hidden.append(x)
            if _dropped(self.layerdrop, self.training):
                continue
            x, w_self, w_cross = layer(x, memory_kv[index], None, cache, index,
                                       output_attentions)
            self_weights.append(w_self)
            cross_weights.append(w_cross)
        x = self.layer_norm(x)
        return BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=x, past_key_values=cache,
            hidden_states=_collected([*hidden, x], output_hidden_states),
            attentions=_collected(self_weights, output_attentions),
            cross_attentions=_collected(cross_weights, output_attentions))


class _WhisperPreTrained(PreTrainedModel):
    config_class = WhisperConfig
    base_model_prefix = "model"
    main_input_name = "input_features"

    def _init_weights(self, module: nn.Module) -> None:
        """Hugging Face's: N(0, init_std) weights, zero biases and padding row, unit layer
        norms, and the encoder's sinusoid table."""
        std = self.config.init_std
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                nn.init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, WhisperEncoder):
            with torch.no_grad():
                module.embed_positions.weight.copy_(
                    whisper_sinusoids(*module.embed_positions.weight.shape))


class WhisperModel(_WhisperPreTrained):
    """The bare encoder-decoder (the ``model.`` of the speech recognition checkpoint): log-mel
    features and token ids -> the decoder's hidden states."""

    def __init__(self, config: WhisperConfig, initialize: bool = True) -> None:
        super().__init__(config)
        self.encoder = WhisperEncoder(config)
        self.decoder = WhisperDecoder(config)
        if initialize:  # the speech recognition model initialises it with its own layer, once
            self.apply(self._init_weights)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.decoder.embed_tokens

    def get_encoder(self) -> WhisperEncoder:
        return self.encoder

    def memory_cache(self, memory: torch.Tensor, use_cache: bool = True) -> TransformerCache:
        """Every decoder layer's keys and values of the ``memory`` (batch, steps, d_model),
        computed once per audio, and, with ``use_cache``, an empty self-attention cache. The
        memory is never padded (every input is 30 s), so there is no memory mask."""
        kv = [layer.encoder_attn.keys_values(memory) for layer in self.decoder.layers]
        return TransformerCache(KVCache(len(kv)) if use_cache else None, kv, None)

    def forward(self, input_features: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None,
                encoder_outputs: BaseModelOutput | None = None,
                past_key_values: TransformerCache | None = None,
                decoder_position_ids: torch.Tensor | None = None, use_cache: bool = False,
                output_attentions: bool = False,
                output_hidden_states: bool = False) -> Seq2SeqModelOutput:
        """input_features (batch, mels, frames); ``attention_mask`` is accepted and unused, as
        in transformers (the features of silence are the padding). decoder_input_ids (batch,
        tgt), or only the newest when ``past_key_values`` (from a call with ``use_cache``)
        holds the earlier ones; ``encoder_outputs`` spares encoding the audio again."""
        if encoder_outputs is None:
            if input_features is None:
                raise ConfigError("give input_features (log-mel, batch x mels x frames) or "
                                  "encoder_outputs")
            encoder_outputs = self.encoder(input_features, output_attentions,
                                           output_hidden_states)
        if decoder_input_ids is None:
            raise ConfigError("give decoder_input_ids (or labels, to the speech recognition "
                              "model)")
        cache = past_key_values
        if cache is None:
            cache = self.memory_cache(encoder_outputs.last_hidden_state, use_cache)
        decoded = self.decoder(decoder_input_ids, cache.memory_kv, cache=cache.self_attn,
                               position_ids=decoder_position_ids,
                               output_attentions=output_attentions,
                               output_hidden_states=output_hidden_states)
        return Seq2SeqModelOutput.of(decoded, encoder_outputs, cache, use_cache)


class WhisperForConditionalGeneration(_WhisperPreTrained):
    """Whisper with its output layer: speech to text.

    ``forward(input_features, labels=...)`` trains (the decoder reads the labels shifted right,
    <|startoftranscript|> first; -100 is ignored in the loss). ``wxb.generation.whisper``
    transcribes (``decode_window``, ``transcribe``, ``detect_language``); plain
    ``wxb.generate(model, input_features)`` decodes from the start token with no Whisper rules.
    """

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__(config)
        self.model = WhisperModel(config, initialize=False)
        self.proj_out = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        if config.tie_word_embeddings:
            self.proj_out.weight = self.model.decoder.embed_tokens.weight

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.decoder.embed_tokens

    def get_encoder(self) -> WhisperEncoder:
        return self.model.encoder

    # ---------------------------------------------------------------- the two halves

    def encode(self, input_features: torch.Tensor,
               attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor]:
        """The memory (batch, max_source_positions, d_model), alone in a tuple (what
        ``wxb.generate`` passes back to ``decode``); ``attention_mask`` is unused."""
        return (self.model.encoder(input_features).last_hidden_state,)

    def decode(self, decoder_input_ids: torch.Tensor, memory: tuple[torch.Tensor, ...],
               cache: TransformerCache | None = None, position_ids: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, TransformerCache]:
        """One decoding step: logits (batch, new, vocab) after ``decoder_input_ids`` (batch,
        new), and the cache for the next step (created, with the memory's keys and values, on
        the first)."""
        if cache is None:
            cache = self.model.memory_cache(memory[0])
        hidden = self.model.decoder(decoder_input_ids, cache.memory_kv, cache=cache.self_attn,
                                    position_ids=position_ids).last_hidden_state
        return self.proj_out(hidden), cache

    def forward(self, input_features: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None,
                encoder_outputs: BaseModelOutput | None = None,
                past_key_values: TransformerCache | None = None,
                decoder_position_ids: torch.Tensor | None = None, use_cache: bool = False,
                output_attentions: bool = False,
                output_hidden_states: bool = False) -> Seq2SeqLMOutput:
        """input_features (batch, mels, frames); labels (batch, tgt), -100 on padding, at most
        max_target_positions long. Returns logits (batch, tgt, vocab), the loss with labels,
        and WhisperModel's extras."""
        if labels is not None:
            if labels.shape[1] > self.config.max_target_positions:
                raise ConfigError(f"labels have {labels.shape[1]} tokens, more than the "
                                  f"decoder's max_target_positions "
                                  f"({self.config.max_target_positions}); shorten them")
            if decoder_input_ids is None:
                decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id,
                                                       self.config.decoder_start_token_id)
        out = self.model(input_features, attention_mask, decoder_input_ids, encoder_outputs,
                         past_key_values, decoder_position_ids, use_cache, output_attentions,
                         output_hidden_states)
        logits = self.proj_out(out.last_hidden_state)
        loss = seq2seq_loss(logits, labels) if labels is not None else None
        return Seq2SeqLMOutput(
            loss=loss, logits=logits, past_key_values=out.past_key_values,
            decoder_hidden_states=out.decoder_hidden_states,
            decoder_attentions=out.decoder_attentions, cross_attentions=out.cross_attentions,
            encoder_last_hidden_state=out.encoder_last_hidden_state,
            encoder_hidden_states=out.encoder_hidden_states,
            encoder_attentions=out.encoder_attentions)
