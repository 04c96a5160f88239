"""Sequence to sequence with attention: the recurrent encoder-decoder of neural translation.

    source ids -> embedding -> RNN / LSTM / GRU encoder (bidirectional: the two directions'
                  outputs and final states are summed) -> memory (batch, src, hidden)
    decoder, one target token at a time, from the encoder's final state:
      bahdanau   context = attention(previous state, memory)                  (additive)
                 state = RNN([embed(y_prev); context], state)
                 logits = W tanh(W_r [state; context; embed(y_prev)])   (the readout layer)
      dot/general state = RNN([embed(y_prev); h~_prev], state)  (Luong, with input feeding)
                 context = attention(state, memory)            (dot: s.m, general: s.W m)
                 h~ = tanh(W_c [state; context]);  logits = W h~
      none       state = RNN(embed(y_prev), state);  logits = W state

Bahdanau et al. (2015) score with the state before the step, v . tanh(W_q s + W_k m); Luong et
al. (2015) with the state after it. The weights of every step are returned, so a translation
can be drawn as a heatmap (source x output).

Training feeds the true previous token (teacher forcing); ``teacher_forcing_ratio`` below 1
feeds, per token and per sentence, the model's own previous guess with probability 1 - ratio,
which is how scheduled sampling (Bengio et al., 2015) lowers the gap between training and
decoding (``scheduled_ratio`` gives the schedules; the translation pipeline applies one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from wxb.errors import ConfigError
from wxb.models.base import Config, PreTrainedModel, check_token_ids
from wxb.models.outputs import Seq2SeqLMOutput, seq2seq_loss, shift_tokens_right
from wxb.nn import Dropout, Recurrent
from wxb.nn.recurrent import IMPLS, State

ATTENTIONS = ("bahdanau", "dot", "general", "none")
CELLS = ("rnn", "lstm", "gru")
SCHEDULES = ("constant", "linear", "exponential", "inverse_sigmoid")


@dataclass
class Seq2SeqConfig(Config):
    model_type = "seq2seq"
    is_encoder_decoder: ClassVar[bool] = True

    vocab_size: int = 8000  # the source's
    decoder_vocab_size: int | None = None  # the target's; None: vocab_size
    embedding_size: int = 256
    hidden_size: int = 256
    num_hidden_layers: int = 1  # of the encoder and of the decoder
    cell: str = "gru"
    bidirectional: bool = True  # the encoder's
    attention: str = "bahdanau"  # bahdanau | dot | general | none
    dropout: float = 0.2
    teacher_forcing_ratio: float = 1.0
    impl: str = "wxb"  # the encoder's recurrent kernels: wxb (written out) | torch
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.decoder_vocab_size is None:
            self.decoder_vocab_size = self.vocab_size
        for name, value, choices in (("cell", self.cell, CELLS),
                                     ("attention", self.attention, ATTENTIONS),
                                     ("impl", self.impl, IMPLS)):
            if value not in choices:
                raise ConfigError(f"unknown {name} {value!r}; choose one of: "
                                  f"{', '.join(choices)}")
        if not 0 <= self.teacher_forcing_ratio <= 1:
            raise ConfigError(f"teacher_forcing_ratio must be in [0, 1], got "
                              f"{self.teacher_forcing_ratio}")
        check_token_ids(self, self.vocab_size, embedded=("pad_token_id",))
        check_token_ids(self, self.decoder_vocab_size, embedded=("pad_token_id",),
                        generated=("eos_token_id",))


class Attention(nn.Module):
    """Scores of a query against every memory position, softmax over the real ones, and the
    weighted sum. ``kind``: bahdanau v . tanh(W_q q + W_k m); dot q . m; general q . W m."""

    def __init__(self, kind: str, hidden: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "bahdanau":
            self.query = nn.Linear(hidden, hidden, bias=False)
            self.key = nn.Linear(hidden, hidden)
            self.v = nn.Linear(hidden, 1, bias=False)
        elif kind == "general":
            self.key = nn.Linear(hidden, hidden, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        """What the scores compare a query with, computed once per sentence (batch, src,
        hidden)."""
        return memory if self.kind == "dot" else self.key(memory)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """query (batch, hidden); mask (batch, src), 1 on real positions. Returns the context
        (batch, hidden) and the weights (batch, src)."""
        if self.kind == "bahdanau":
            scores = self.v(torch.tanh(self.query(query)[:, None] + keys)).squeeze(-1)
        else:
            scores = (keys @ query[:, :, None]).squeeze(-1)
        scores = scores.masked_fill(mask == 0, torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1)
        return (weights[:, None] @ memory).squeeze(1), weights


class Seq2SeqCache:
    """The decoder's state between steps: the recurrent state, the last attentional vector
    (Luong's input feeding) and the attention keys of the memory."""

    def __init__(self, state: State, feed: torch.Tensor | None,
                 keys: torch.Tensor | None) -> None:
        self.state, self.feed, self.keys = state, feed, keys

    def reorder(self, beam_idx: torch.Tensor) -> None:
        """Keep rows ``beam_idx`` (beam search); states are (layers, batch, hidden)."""
        if isinstance(self.state, tuple):
            self.state = tuple(s.index_select(1, beam_idx) for s in self.state)
        else:
            self.state = self.state.index_select(1, beam_idx)
        self.feed = None if self.feed is None else self.feed.index_select(0, beam_idx)
        self.keys = None if self.keys is None else self.keys.index_select(0, beam_idx)


class Seq2Seq(PreTrainedModel):
    """The recurrent encoder-decoder with attention (see the module docstring).

    ``forward(input_ids, attention_mask, labels)`` trains on the labels shifted right (the
    start token first); ``wxb.generation.generate(model, input_ids, attention_mask=...,
    num_beams=4)`` translates.
    """

    config_class = Seq2SeqConfig

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__(config)
        c = config
        e, h = c.embedding_size, c.hidden_size
        self.encoder_embeddings = nn.Embedding(c.vocab_size, e, padding_idx=c.pad_token_id)
        self.encoder = Recurrent(c.cell, e, h, c.num_hidden_layers,
                                 bidirectional=c.bidirectional, dropout=c.dropout, impl=c.impl)
        self.decoder_embeddings = nn.Embedding(c.decoder_vocab_size, e,
                                               padding_idx=c.pad_token_id)
        fed = 0 if c.attention == "none" else h  # the context (Bahdanau) or h~ (Luong)
        self.decoder = Recurrent(c.cell, e + fed, h, c.num_hidden_layers, dropout=c.dropout)
        self.attention = None if c.attention == "none" else Attention(c.attention, h)
        # Luong's attentional layer h~ = tanh(W_c [s; c]); Bahdanau's readout, which also
        # keeps the widest matrix, the output layer's, at embedding_size columns.
        self.combine = nn.Linear(2 * h, h) if c.attention in ("dot", "general") else None
        self.readout = nn.Linear(2 * h + e, e) if c.attention == "bahdanau" else None
        self.output = nn.Linear(e if c.attention == "bahdanau" else h, c.decoder_vocab_size)
        self.dropout = Dropout(c.dropout)
        self.teacher_forcing_ratio = c.teacher_forcing_ratio

    # ---------------------------------------------------------------- encoder

    def encode(self, input_ids: torch.Tensor,
               attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """(memory (batch, src, hidden), mask (batch, src), the decoder's first state h
        (batch, layers, hidden) [, and c for the LSTM]): all batch-first, so decoding can
        repeat them per beam."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        lengths = attention_mask.sum(dim=1).clamp(min=1)
        out, final = self.encoder(self.dropout(self.encoder_embeddings(input_ids)), lengths)
        directions = 2 if self.config.bidirectional else 1
        memory = out.unflatten(-1, (directions, -1)).sum(dim=2)

        def per_layer(s: torch.Tensor) -> torch.Tensor:  # (layers * dirs, b, h) -> (b, layers, h)
            return s.unflatten(0, (-1, directions)).sum(dim=1).transpose(0, 1)

        finals = final if isinstance(final, tuple) else (final,)
        return (memory, attention_mask, *map(per_layer, finals))

    # ---------------------------------------------------------------- decoder

    def start(self, memory: tuple[torch.Tensor, ...]) -> Seq2SeqCache:
        """The decoder's cache before its first step."""
        states = tuple(s.transpose(0, 1).contiguous() for s in memory[2:])
        state = states if self.config.cell == "lstm" else states[0]
        feed = memory[0].new_zeros(memory[0].shape[0], self.config.hidden_size) \
            if self.combine is not None else None
        keys = self.attention.keys(memory[0]) if self.attention is not None else None
        return Seq2SeqCache(state, feed, keys)

    def step(self, tokens: torch.Tensor, cache: Seq2SeqCache, memory: tuple[torch.Tensor, ...]
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One target position: tokens (batch,) -> logits (batch, target vocab) and the
        attention weights (batch, src) (None without attention); ``cache`` moves on."""
        x = self.dropout(self.decoder_embeddings(tokens))
        kind, weights = self.config.attention, None
        if kind == "bahdanau":
            top = cache.state[0][-1] if isinstance(cache.state, tuple) else cache.state[-1]
            context, weights = self.attention(top, cache.keys, memory[0], memory[1])
            out, cache.state = self.decoder.step(torch.cat([x, context], dim=-1), cache.state)
            features = torch.tanh(self.readout(torch.cat([out, context, x], dim=-1)))
        elif kind == "none":
            features, cache.state = self.decoder.step(x, cache.state)
        else:
            out, cache.state = self.decoder.step(torch.cat([x, cache.feed], dim=-1),
                                                 cache.state)
            context, weights = self.attention(out, cache.keys, memory[0], memory[1])
            features = cache.feed = torch.tanh(self.combine(torch.cat([out, context], dim=-1)))
        return self.output(self.dropout(features)), weights

    def decode(self, decoder_input_ids: torch.Tensor, memory: tuple[torch.Tensor, ...],
               cache: Seq2SeqCache | None = None, position_ids: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, Seq2SeqCache]:
        """Logits (batch, new, target vocab) after each of ``decoder_input_ids`` (batch, new),
        and the cache for the next step (``position_ids`` is unused: the state knows)."""
        cache = cache if cache is not None else self.start(memory)
        logits = [self.step(t, cache, memory)[0] for t in decoder_input_ids.unbind(1)]
        return torch.stack(logits, dim=1), cache

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None,
                output_attentions: bool = False) -> Seq2SeqLMOutput:
        """input_ids (batch, src) right-padded with ``attention_mask``; labels (batch, tgt)
        with -100 on padding. In training, each position's input is the true previous token
        with probability ``teacher_forcing_ratio``, else the model's own previous guess."""
        if decoder_input_ids is None:
            if labels is None:
                raise ConfigError("give labels (training) or decoder_input_ids")
            decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id,
                                                   self.config.decoder_start_token_id)
        memory = self.encode(input_ids, attention_mask)
        cache = self.start(memory)
        ratio = self.teacher_forcing_ratio if self.training else 1.0
        logits, weights = [], []
        for t, tokens in enumerate(decoder_input_ids.unbind(1)):
            if t and ratio < 1:
                own = logits[-1].detach().argmax(dim=-1)
                gold = torch.rand(tokens.shape, device=tokens.device) < ratio
                tokens = torch.where(gold, tokens, own)
            step_logits, step_weights = self.step(tokens, cache, memory)
            logits.append(step_logits)
            weights.append(step_weights)
        logits = torch.stack(logits, dim=1)
        loss = None
        if labels is not None:
            loss = seq2seq_loss(logits, labels, self.config.label_smoothing)
        attentions = None
        if output_attentions and self.attention is not None:
            attentions = (torch.stack(weights, dim=1)[:, None],)  # one layer, one head
        return Seq2SeqLMOutput(loss=loss, logits=logits, cross_attentions=attentions,
                               encoder_last_hidden_state=memory[0])


def scheduled_ratio(schedule: str, step: int, total: int, *, start: float = 1.0,
                    end: float = 0.5, k: float = 10.0) -> float:
    """The teacher forcing ratio at ``step`` of ``total`` (Bengio et al., 2015):

    constant         start
    linear           start -> end evenly over the run
    exponential      start * k'^progress, reaching end at the last step
    inverse_sigmoid  k / (k + exp(progress * k)) rescaled to run from start towards end
    """
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown teacher forcing schedule {schedule!r}; choose one of: "
                          f"{', '.join(SCHEDULES)}")
    progress = min(max(step / max(total, 1), 0.0), 1.0)
    if schedule == "constant":
        return start
    if schedule == "linear":
        return start + (end - start) * progress
    if schedule == "exponential":
        return start * (end / start) ** progress if start > 0 else 0.0
    sigmoid = k / (k + math.exp(progress * k))  # 1 at step 0 roughly, falling
    first, last = k / (k + 1), k / (k + math.exp(k))
    return end + (start - end) * (sigmoid - last) / (first - last)
