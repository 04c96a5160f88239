"""The forward pass every decoder-only language model shares (GPT-2, LLaMA), and its heads.

A family's bare model (``GPT2Model``, ``LlamaModel``) is a ``DecoderModel`` and supplies its
pieces: ``embed`` (token ids and positions to vectors, plus anything its layers need, such as
LLaMA's rotary angles), ``blocks`` and ``final_norm``. ``DecoderModel.forward`` runs them: the
cache, positions, masks and the layer loop. A head keeps the bare model under its
``base_model_prefix`` (``transformer.``, ``model.``): ``CausalLMBase`` puts ``lm_head``
(next-token logits and loss) on top, ``SequenceClassifierBase`` a ``score`` layer read at each
sequence's last token (reward models).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from wxb.errors import ConfigError
from wxb.models.base import PreTrainedModel
from wxb.models.outputs import (
    BaseModelOutputWithPast,
    CausalLMOutputWithPast,
    SequenceClassifierOutput,
    causal_lm_loss,
    sequence_classification_loss,
)
from wxb.nn import KVCache, make_mask


def init_weights(model: nn.Module, std: float) -> None:
    """GPT-2's and LLaMA's initialisation of every layer in ``model``: N(0, std) linear and
    embedding weights, zero biases.

    A bare model initialises itself only when built alone (``initialize=True``); a head builds
    it with ``initialize=False`` and initialises the whole model once, its own layer included,
    so no weight is drawn twice.
    """
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)


class DecoderModel(PreTrainedModel):
    """A bare decoder: token ids -> the final norm's hidden states (no head)."""

    supports_gradient_checkpointing = True

    def embed(self, input_ids: torch.Tensor,
              position_ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """(batch, seq) ids -> (batch, seq, hidden) vectors and extra keyword arguments for
        every layer."""
        raise NotImplementedError

    def blocks(self) -> nn.ModuleList:
        raise NotImplementedError

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None,
                past_key_values: KVCache | None = None, use_cache: bool = False,
                output_attentions: bool = False,
                output_hidden_states: bool = False) -> BaseModelOutputWithPast:
        """input_ids (batch, seq); attention_mask (batch, past + seq), 0 on padding;
        position_ids (batch, seq), by default counting on from the cached positions;
        ``past_key_values`` a KVCache of the earlier positions, filled in place, and returned
        with ``use_cache`` (a new one when none was given)."""
        layers = self.blocks()
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
            if past_key_values is None:
                x, w = self.run_layer(layer, x, mask, None, output_attentions, **extras)
            else:  # a cache fills as its layers run: never run one twice
                x, w = layer(x, mask, past_key_values, output_attentions, **extras)
            weights.append(w)
        x = self.final_norm(x)
        hidden.append(x)
        return BaseModelOutputWithPast(
            last_hidden_state=x, past_key_values=past_key_values if use_cache else None,
            hidden_states=tuple(hidden) if output_hidden_states else None,
            attentions=tuple(weights) if output_attentions else None)


class CausalLMBase(PreTrainedModel):
    """A bare decoder under ``base_model_prefix`` with ``lm_head``: next-token logits."""

    supports_gradient_checkpointing = True
    base_model_prefix: ClassVar[str]
    lm_head: nn.Linear

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
    ) -> CausalLMOutputWithPast:
        """The inputs of ``DecoderModel.forward``; ``labels`` (batch, seq) gives the next-token
        loss (-100 ignored); ``use_cache`` returns a KVCache for the next step;
        ``logits_to_keep=n`` computes only the last n positions' logits (decoding needs just
        one). Returns logits (batch, seq or n, vocab)."""
        out = self.base_model(input_ids, attention_mask, position_ids, past_key_values,
                              use_cache, output_attentions, output_hidden_states)
        x = out.last_hidden_state
        logits = self.lm_head(x[:, -logits_to_keep:] if logits_to_keep else x)
        return CausalLMOutputWithPast(
            loss=causal_lm_loss(logits, labels) if labels is not None else None,
            logits=logits, past_key_values=out.past_key_values,
            hidden_states=out.hidden_states, attentions=out.attentions)


class SequenceClassifierBase(PreTrainedModel):
    """A bare decoder under ``base_model_prefix`` with a ``score`` layer (no bias) read at
    each sequence's last real token, as in Hugging Face's ``*ForSequenceClassification`` of
    GPT-2 and LLaMA: with ``num_labels=1`` it is a reward model (one scalar per sequence)."""

    supports_gradient_checkpointing = True
    base_model_prefix: ClassVar[str]
    score: nn.Linear

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_attentions: bool = False,
                output_hidden_states: bool = False) -> SequenceClassifierOutput:
        """input_ids (batch, seq) -> logits (batch, num_labels); the loss (when ``labels``)
        follows ``problem_type`` as in Hugging Face."""
        out = self.base_model(input_ids, attention_mask, position_ids,
                              output_attentions=output_attentions,
                              output_hidden_states=output_hidden_states)
        logits = self.score(out.last_hidden_state)  # (batch, seq, num_labels)
        last = last_token_index(input_ids, self.config.pad_token_id)
        pooled = logits[torch.arange(len(input_ids), device=logits.device), last]
        loss = None if labels is None else sequence_classification_loss(
            pooled, labels.to(pooled.device), self.config.num_labels, self.config.problem_type)
        return SequenceClassifierOutput(loss=loss, logits=pooled,
                                        hidden_states=out.hidden_states,
                                        attentions=out.attentions)


def last_token_index(input_ids: torch.Tensor, pad_token_id: int | None) -> torch.Tensor:
    """(batch,) position of each row's rightmost token that is not padding, as Hugging Face
    finds it (so left and right padding both work); without a pad token every row must be
    full length."""
    batch, seq = input_ids.shape
    if pad_token_id is None:
        if batch != 1:
            raise ConfigError("a batch of several sequences needs config.pad_token_id to find "
                              "each one's last token; set pad_token_id")
        return torch.full((batch,), seq - 1, device=input_ids.device)
    positions = torch.arange(seq, device=input_ids.device)
    return (positions * (input_ids != pad_token_id)).argmax(-1)
