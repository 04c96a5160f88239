"""Output records of the models' forward passes (named as in Hugging Face)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from wxb.errors import ConfigError


@dataclass
class SequenceClassifierOutput:
    """``loss`` (when labels were given) and ``logits`` of shape (batch, num_labels)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


@dataclass
class CausalLMOutput:
    """``logits`` (batch, seq, vocab); ``loss`` of next-token prediction when labels are given;
    the cache for the next decoding step; per-layer hidden states and attention weights when
    asked for."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    past_key_values: object | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting token t+1 from position t; label -100 is ignored.

    logits (batch, seq, vocab) and labels (batch, seq) are aligned (labels are usually the
    input ids): the shift happens here, as in Hugging Face.
    """
    # Shifting the labels left (the last position gets -100) instead of slicing the logits
    # spares a copy of the largest tensor in the model; the loss is the same.
    targets = F.pad(labels[:, 1:].to(logits.device), (0, 1), value=-100)
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100)


@dataclass
class Seq2SeqLMOutput:
    """An encoder-decoder's output: ``logits`` (batch, tgt, target vocab), ``loss`` when labels
    were given, and with ``output_attentions`` the decoder's attention over the source,
    ``cross_attentions``: one (batch, heads, tgt, src) tensor per decoder layer (the recurrent
    Seq2Seq has one layer of attention with one head)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cross_attentions: tuple[torch.Tensor, ...] | None = None


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
