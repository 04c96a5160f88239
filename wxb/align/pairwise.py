"""What reward models and DPO share: score a chosen and a rejected response in one pass, turn the
two scores into a loss, and report how often the chosen one wins.

    batch (PreferenceCollator) -> concatenated: 2 x batch rows, chosen first
        -> score(input_ids, attention_mask, labels): one number per row (2 * batch,)
        -> split into chosen (batch,) and rejected (batch,) -> pair_loss -> PreferenceOutput

A subclass says what the score is (a reward model's scalar head; DPO's log-probability of the
response) and what loss the two scores make. The wrapper is an ordinary ``nn.Module`` whose
``forward(**batch)`` returns ``loss`` and ``logits``, so the general Trainer trains it and
``preference_metrics`` reads its evaluation: ``logits`` (batch, 2) are the rewards of the
chosen and the rejected response.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from wxb.data.preference import concatenated


@dataclass
class PreferenceOutput:
    """``loss`` (a scalar) and ``logits`` (batch, 2): the rewards of [chosen, rejected]."""

    loss: torch.Tensor
    logits: torch.Tensor


class PairwiseModel(nn.Module):
    """Holds ``model`` and scores both halves of a preference batch with it in one pass."""

    main_input_name = "chosen_input_ids"  # what the Trainer's group_by_length measures

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              labels: torch.Tensor) -> torch.Tensor:
        """(rows, seq) ids, mask and labels (-100 on the prompt) -> (rows,) scores."""
        raise NotImplementedError

    def pair_loss(self, chosen: torch.Tensor, rejected: torch.Tensor,
                  **extra: torch.Tensor) -> PreferenceOutput:
        """(batch,) scores of the chosen and the rejected responses -> loss and rewards;
        ``extra``: the batch's other numbers (a margin, reference log-probs)."""
        raise NotImplementedError

    def forward(self, chosen_input_ids: torch.Tensor, chosen_attention_mask: torch.Tensor,
                chosen_labels: torch.Tensor, rejected_input_ids: torch.Tensor,
                rejected_attention_mask: torch.Tensor, rejected_labels: torch.Tensor,
                **extra: torch.Tensor) -> PreferenceOutput:
        """A collated preference batch, each tensor (batch, seq) -> ``PreferenceOutput``."""
        halves = {"chosen_input_ids": chosen_input_ids,
                  "chosen_attention_mask": chosen_attention_mask,
                  "chosen_labels": chosen_labels, "rejected_input_ids": rejected_input_ids,
                  "rejected_attention_mask": rejected_attention_mask,
                  "rejected_labels": rejected_labels}
        chosen, rejected = self.score(*concatenated(halves)).chunk(2)
        return self.pair_loss(chosen, rejected, **extra)

    def num_parameters(self, trainable_only: bool = False) -> int:
        return self.model.num_parameters(trainable_only)

    def gradient_checkpointing_enable(self) -> None:
        self.model.gradient_checkpointing_enable()

    def get_input_embeddings(self) -> nn.Module | None:
        """The wrapped model's token embeddings (where NEFTune adds its noise)."""
        return self.model.get_input_embeddings()


def preference_metrics(prediction: Any) -> dict[str, float]:
    """``compute_metrics`` for a PairwiseModel (``prediction``: the Trainer's EvalPrediction):
    from the (examples, 2) rewards of [chosen, rejected], their means, ``rewards/accuracies``
    (the share of pairs whose chosen response has the strictly higher reward: a tie counts as
    wrong, as in TRL) and ``rewards/margins`` (the mean of chosen - rejected). TRL's names;
    the Trainer adds ``eval_``."""
    rewards = np.asarray(prediction.predictions, dtype=np.float64)
    chosen, rejected = rewards[:, 0], rewards[:, 1]
    return {"rewards/chosen": float(chosen.mean()), "rewards/rejected": float(rejected.mean()),
            "rewards/accuracies": float((chosen > rejected).mean()),
            "rewards/margins": float((chosen - rejected).mean())}


def disable_dropout(model: nn.Module) -> nn.Module:
    """Turn every dropout of ``model`` off, in place, as TRL's DPO and reward trainers do by
    default (``disable_dropout=True``): the log-probabilities a DPO policy is trained on must
    be comparable with the reference's, which are computed without dropout. Covers dropout
    layers (LoRA's too) and the attention-probability dropout that GPT-2 and LLaMA keep as a
    number (``attn_dropout``, ``dropout``)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        for name in ("attn_dropout", "dropout"):
            if isinstance(getattr(module, name, None), float):
                setattr(module, name, 0.0)
    return model
