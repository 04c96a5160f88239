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
    logits = logits[:, :-1].float()
    targets = labels[:, 1:].to(logits.device)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=-100)
