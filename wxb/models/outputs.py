"""Output records of the models' forward passes, named and ordered as in Hugging Face, and the
losses the heads share.

Every record is a ``ModelOutput``: a dataclass read by attribute (``out.logits``), by name
(``out["logits"]``) or by position (``out[0]``), where names and positions count only the fields
that are set, in field order. So ``model(**batch)[0]`` is the loss when labels were given and
the logits otherwise, exactly as with ``transformers``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from wxb.errors import ConfigError

Tensors = tuple[torch.Tensor, ...]


class ModelOutput(Mapping):
    """Base of the output dataclasses: a read-only mapping of the fields that are not None.

    As ``transformers.utils.ModelOutput``: iteration, ``keys()``, ``len`` and ``in`` see the
    set fields' names; ``out[name]`` raises KeyError for a field left None; an int or a slice
    indexes ``to_tuple()``, the set fields' values in field order.
    """

    def _set_fields(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            if key not in self:
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._set_fields())

    def __len__(self) -> int:
        return len(self._set_fields())

    def __contains__(self, key: object) -> bool:
        # Mapping's own test would try self[key], and an int key is a position there.
        return isinstance(key, str) and key in self._set_fields()

    def get(self, key: str, default: Any = None) -> Any:
        # Mapping's own would return a position for an int key; a dict's get never does.
        return getattr(self, key) if key in self else default

    def to_tuple(self) -> tuple[Any, ...]:
        """The values of the fields that are set, in field order."""
        return tuple(getattr(self, name) for name in self._set_fields())


# ----------------------------------------------------------------------------- bare models


@dataclass
class BaseModelOutput(ModelOutput):
    """An encoder's output: ``last_hidden_state`` (batch, seq, hidden); with
    ``output_hidden_states`` the input of every layer and the last output (layers + 1 tensors
    of (batch, seq, hidden)); with ``output_attentions`` every layer's weights (batch, heads,
    seq, seq)."""

    last_hidden_state: torch.Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class BaseModelOutputWithPooling(ModelOutput):
    """BERT's: ``last_hidden_state`` (batch, seq, hidden); ``pooler_output`` (batch, hidden)
    or None; per-layer ``hidden_states`` (embeddings first) and ``attentions`` when asked."""

    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class BaseModelOutputWithPast(ModelOutput):
    """A decoder's output: ``last_hidden_state`` (batch, seq, hidden) after the final norm;
    with ``use_cache`` the cache for the next step (``past_key_values``); per-layer hidden
    states (embeddings first, the final norm's output last) and attention weights (batch,
    heads, seq, past + seq) when asked for."""

    last_hidden_state: torch.Tensor | None = None
    past_key_values: Any = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class BaseModelOutputWithPastAndCrossAttentions(ModelOutput):
    """The decoder of an encoder-decoder: a decoder's output plus every layer's attention
    over the source, ``cross_attentions`` (batch, heads, tgt, src)."""

    last_hidden_state: torch.Tensor | None = None
    past_key_values: Any = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None
    cross_attentions: Tensors | None = None


@dataclass
class Seq2SeqModelOutput(ModelOutput):
    """An encoder-decoder without its output layer: the decoder's ``last_hidden_state``
    (batch, tgt, hidden), its cache, hidden states and attentions, the attention over the
    source, and the encoder's last hidden state (batch, src, hidden), hidden states and
    attentions."""

    last_hidden_state: torch.Tensor | None = None
    past_key_values: Any = None
    decoder_hidden_states: Tensors | None = None
    decoder_attentions: Tensors | None = None
    cross_attentions: Tensors | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    encoder_hidden_states: Tensors | None = None
    encoder_attentions: Tensors | None = None

    @classmethod
    def of(cls, decoded: BaseModelOutputWithPastAndCrossAttentions, encoded: Any, cache: Any,
           use_cache: bool) -> Seq2SeqModelOutput:
        """The output of a decoder pass over an encoder's (``cache`` kept if ``use_cache``)."""
        return cls(last_hidden_state=decoded.last_hidden_state,
                   past_key_values=cache if use_cache else None,
                   decoder_hidden_states=decoded.hidden_states,
                   decoder_attentions=decoded.attentions,
                   cross_attentions=decoded.cross_attentions,
                   encoder_last_hidden_state=encoded.last_hidden_state,
                   encoder_hidden_states=encoded.hidden_states,
                   encoder_attentions=encoded.attentions)


# ----------------------------------------------------------------------------- heads


@dataclass
class CausalLMOutputWithPast(ModelOutput):
    """``logits`` (batch, seq, vocab); ``loss`` of next-token prediction when labels are given;
    the cache for the next decoding step; per-layer hidden states and attention weights when
    asked for."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    past_key_values: Any = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class SequenceClassifierOutput(ModelOutput):
    """``loss`` (when labels were given) and ``logits`` of shape (batch, num_labels); the
    encoder's hidden states and attentions when asked for."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class TokenClassifierOutput(ModelOutput):
    """``loss`` (when labels were given; -100 ignored) and ``logits`` (batch, seq, labels)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class MaskedLMOutput(ModelOutput):
    """``loss`` over the labelled positions and ``logits`` (batch, seq, vocab), or
    (labelled positions, vocab) under sparse prediction."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class BertForPreTrainingOutput(ModelOutput):
    """Masked LM + next sentence: ``prediction_logits`` (as ``MaskedLMOutput.logits``) and
    ``seq_relationship_logits`` (batch, 2); ``loss`` is the sum of both losses."""

    loss: torch.Tensor | None = None
    prediction_logits: torch.Tensor | None = None
    seq_relationship_logits: torch.Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None

    @property
    def logits(self) -> torch.Tensor | None:  # the name every other head uses
        return self.prediction_logits


@dataclass
class QuestionAnsweringModelOutput(ModelOutput):
    """Every position's ``start_logits`` and ``end_logits`` (batch, seq); ``loss`` the mean of
    their cross-entropies when the answer positions were given."""

    loss: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class Seq2SeqLMOutput(ModelOutput):
    """An encoder-decoder's output: ``logits`` (batch, tgt, target vocab), ``loss`` when labels
    were given, the fields of ``Seq2SeqModelOutput`` that the model fills (``encoder_last_
    hidden_state`` always; the decoder's attention over the source, ``cross_attentions``, with
    ``output_attentions``: one (batch, heads, tgt, src) tensor per decoder layer; the recurrent
    Seq2Seq has one layer of attention with one head)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    past_key_values: Any = None
    decoder_hidden_states: Tensors | None = None
    decoder_attentions: Tensors | None = None
    cross_attentions: Tensors | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    encoder_hidden_states: Tensors | None = None
    encoder_attentions: Tensors | None = None


# ----------------------------------------------------------------------------- losses


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting token t+1 from position t; label -100 is ignored.

    logits (batch, seq, vocab) and labels (batch, seq) are aligned (labels are usually the
    input ids): the shift happens here, as in Hugging Face.
    """
    # Shifting the labels left (the last position gets -100) instead of slicing the logits
    # spares a copy of the largest tensor in the model; the loss is the same.
    targets = F.pad(labels[:, 1:].to(logits.device), (0, 1), value=-100)
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100)


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int,
                       decoder_start_token_id: int) -> torch.Tensor:
    """The decoder's input for teacher forcing: the start token, then the labels but the last
    (-100 padding read as the pad token). (batch, tgt) -> (batch, tgt)."""
    shifted = labels.new_full(labels.shape, decoder_start_token_id)
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill(shifted == -100, pad_token_id)


def seq2seq_loss(logits: torch.Tensor, labels: torch.Tensor,
                 label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of logits (batch, tgt, vocab) against labels (batch, tgt), aligned
    (no shift: the decoder's input was shifted instead); -100 is ignored."""
    return F.cross_entropy(logits.float().flatten(0, 1), labels.to(logits.device).flatten(),
                           ignore_index=-100, label_smoothing=label_smoothing)


def sequence_classification_loss(logits: torch.Tensor, labels: torch.Tensor, num_labels: int,
                                 problem_type: str | None = None) -> torch.Tensor:
    """A sequence classifier's loss as Hugging Face picks it from ``problem_type``: mean
    squared error for one label (regression), cross-entropy for class ids, binary
    cross-entropy for multi-hot float labels. logits (batch, num_labels), labels (batch,) or
    (batch, num_labels)."""
    kind = problem_type or ("regression" if num_labels == 1 else "single_label_classification"
                            if not labels.is_floating_point() else "multi_label_classification")
    if kind == "regression":
        return F.mse_loss(logits.squeeze(-1).float(), labels.float())
    if kind == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
    if bool(((labels < 0) | (labels >= num_labels)).any()):
        bad = labels[(labels < 0) | (labels >= num_labels)][0].item()
        raise ConfigError(f"label {bad} is outside num_labels {num_labels} (labels are "
                          f"0..{num_labels - 1}); set num_labels to the number of classes")
    return F.cross_entropy(logits.float(), labels)
