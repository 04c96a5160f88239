"""Output records of the models' forward passes (named as in Hugging Face)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


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
