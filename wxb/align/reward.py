"""A reward model (Ouyang et al. 2022, InstructGPT): one number per prompt + response, trained on
preference pairs so that the chosen response scores higher than the rejected one.

The model is a sequence classifier with one label (``LlamaForSequenceClassification`` /
``GPT2ForSequenceClassification`` with ``num_labels=1``: a ``score`` layer read at the last
token). The Bradley-Terry likelihood of the preference gives the loss, as in TRL's
RewardTrainer:

    loss = -log σ(r_chosen - r_rejected - margin)           margin: 0, or the row's ``margin``

A margin (how much better the chosen response is, Llama 2's rating gap) asks for a larger gap
where the raters were more certain.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wxb.align.pairwise import PairwiseModel, PreferenceOutput
from wxb.errors import ConfigError


def reward_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                margin: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of -log σ(chosen - rejected - margin) over (batch,) rewards."""
    gap = chosen_rewards - rejected_rewards
    if margin is not None:
        gap = gap - margin.to(gap)
    return -F.logsigmoid(gap).mean()


class RewardModel(PairwiseModel):
    """A one-label sequence classifier (``self.model``) trained on preference pairs; ``logits``
    (batch, 2) are its rewards of [chosen, rejected]."""

    def __init__(self, model: torch.nn.Module) -> None:
        if getattr(model.config, "num_labels", None) != 1:
            raise ConfigError(f"a reward model gives one number per sequence: "
                              f"{type(model).__name__} needs num_labels=1, it has "
                              f"{getattr(model.config, 'num_labels', None)}")
        super().__init__(model)

    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              labels: torch.Tensor) -> torch.Tensor:
        """The reward of each row, read at its last token (the labels are not needed)."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0]

    def pair_loss(self, chosen: torch.Tensor, rejected: torch.Tensor, *,
                  margin: torch.Tensor | None = None) -> PreferenceOutput:
        return PreferenceOutput(reward_loss(chosen, rejected, margin),
                                torch.stack([chosen, rejected], dim=1).detach())
