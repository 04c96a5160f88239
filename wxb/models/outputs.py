"""Output records of the models' forward passes (named as in Hugging Face)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SequenceClassifierOutput:
    """``loss`` (when labels were given) and ``logits`` of shape (batch, num_labels)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
