"""Direct Preference Optimization (Rafailov et al. 2023): a language model learns from preference
pairs directly, with no reward model and no RL loop.

The policy πθ's implicit reward for a response y to a prompt x is how much likelier it makes y
than the frozen reference model π_ref (the policy it started as) does:

    r(x, y) = β · (log πθ(y|x) - log π_ref(y|x))           log π(y|x): summed over y's tokens

and the Bradley-Terry likelihood of the human preference y_w ≻ y_l becomes the loss

    h = (log πθ(y_w|x) - log πθ(y_l|x)) - (log π_ref(y_w|x) - log π_ref(y_l|x))
    sigmoid:  -(1 - ε) · log σ(β h) - ε · log σ(-β h)      ε: label_smoothing (cDPO)
    ipo:      (h - 1/(2β))²                                 (Azar et al. 2023, eq. 17)

As in TRL, IPO uses log-probabilities averaged over the response's tokens instead of summed, for
the policy and the reference alike, and so do the rewards it reports. β (0.1 by default) says how
far the policy may move from the reference: small β, large moves.

The reference's log-probabilities never change, so ``reference_logps`` computes them once,
before training, and stores them with each pair: only the policy is in memory while it trains,
and checkpoints hold the policy alone. ``DPOModel`` wraps the policy for the general Trainer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from wxb.align.pairwise import PairwiseModel, PreferenceOutput
from wxb.data.preference import PreferenceCollator, PreferenceDataset, concatenated
from wxb.errors import ConfigError

LOSS_TYPES = ("sigmoid", "ipo")


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor, *,
                   average: bool = False) -> torch.Tensor:
    """log p(labels) of each row: logits (batch, seq, vocab) and labels (batch, seq) are
    aligned as for a causal LM's loss (position t predicts label t+1), -100 is ignored.
    Returns (batch,) sums, or means over the scored tokens with ``average``."""
    targets = labels[:, 1:].to(logits.device)
    # -cross_entropy is log_softmax gathered at the target, and 0 where the label is -100,
    # without keeping a (batch, seq, vocab) copy of log-probabilities.
    token_logps = -F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(),
                                   ignore_index=-100, reduction="none").view(targets.shape)
    total = token_logps.sum(-1)
    return total / (targets != -100).sum(-1).clamp(min=1) if average else total


def causal_lm_logps(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    labels: torch.Tensor, *, average: bool = False) -> torch.Tensor:
    """(rows,) log-probabilities of the labelled tokens of each row under a causal LM."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return sequence_logps(logits, labels, average=average)


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             reference_chosen_logps: torch.Tensor, reference_rejected_logps: torch.Tensor, *,
             beta: float = 0.1, label_smoothing: float = 0.0,
             loss_type: str = "sigmoid") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair losses, and the chosen and rejected rewards β·(policy - reference)
    (detached), each (batch,), from (batch,) log-probabilities; TRL's ``dpo_loss``."""
    logits = (policy_chosen_logps - policy_rejected_logps) - (
        reference_chosen_logps - reference_rejected_logps)
    if loss_type == "sigmoid":
        losses = (-F.logsigmoid(beta * logits) * (1 - label_smoothing)
                  - F.logsigmoid(-beta * logits) * label_smoothing)
    elif loss_type == "ipo":
        losses = (logits - 1 / (2 * beta)) ** 2
    else:
        raise ConfigError(f"unknown DPO loss_type {loss_type!r}; choose one of: "
                          f"{', '.join(LOSS_TYPES)}")
    chosen_rewards = beta * (policy_chosen_logps - reference_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - reference_rejected_logps).detach()
    return losses, chosen_rewards, rejected_rewards


def check_dpo_settings(beta: float, label_smoothing: float, loss_type: str) -> None:
    """Refuse settings the loss cannot use, naming the field."""
    if loss_type not in LOSS_TYPES:
        raise ConfigError(f"unknown dpo.loss_type {loss_type!r}; choose one of: "
                          f"{', '.join(LOSS_TYPES)}")
    if not (beta > 0 and math.isfinite(beta)):
        raise ConfigError(f"dpo.beta must be a positive number (0.1 is usual), got {beta}")
    if not 0 <= label_smoothing < 0.5:
        raise ConfigError(f"dpo.label_smoothing must be in [0, 0.5) (the share of preferences "
                          f"assumed flipped), got {label_smoothing}")
    if loss_type == "ipo" and label_smoothing:
        raise ConfigError("dpo.label_smoothing applies to loss_type sigmoid, not ipo")


class DPOModel(PairwiseModel):
    """A policy (a causal LM, ``self.model``) trained with the DPO loss on batches that carry
    the reference's log-probabilities (``reference_logps``). ``logits`` (batch, 2) are the
    implicit rewards of [chosen, rejected]."""

    def __init__(self, policy: nn.Module, *, beta: float = 0.1, label_smoothing: float = 0.0,
                 loss_type: str = "sigmoid") -> None:
        check_dpo_settings(beta, label_smoothing, loss_type)
        super().__init__(policy)
        self.beta, self.label_smoothing, self.loss_type = beta, label_smoothing, loss_type

    @property
    def average_logps(self) -> bool:
        """IPO compares per-token means (as TRL does), the others sums."""
        return self.loss_type == "ipo"

    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              labels: torch.Tensor) -> torch.Tensor:
        return causal_lm_logps(self.model, input_ids, attention_mask, labels,
                               average=self.average_logps)

    def pair_loss(self, chosen: torch.Tensor, rejected: torch.Tensor, *,
                  reference_chosen_logps: torch.Tensor | None = None,
                  reference_rejected_logps: torch.Tensor | None = None) -> PreferenceOutput:
        if reference_chosen_logps is None or reference_rejected_logps is None:
            raise ConfigError("a DPO batch needs reference_chosen_logps and "
                              "reference_rejected_logps: add them to the dataset with "
                              "reference_logps(reference_model, dataset)")
        losses, chosen_rewards, rejected_rewards = dpo_loss(
            chosen, rejected, reference_chosen_logps, reference_rejected_logps,
            beta=self.beta, label_smoothing=self.label_smoothing, loss_type=self.loss_type)
        return PreferenceOutput(losses.mean(), torch.stack([chosen_rewards, rejected_rewards],
                                                           dim=1))


@torch.no_grad()
def reference_logps(reference_model: nn.Module, dataset: PreferenceDataset,
                    batch_size: int = 8, *, average: bool = False) -> PreferenceDataset:
    """``dataset`` with the reference's log-probabilities of each pair's responses
    (``reference_chosen_logps``, ``reference_rejected_logps``; per-token means with
    ``average``, for IPO). The model runs in eval mode, without gradients, on its device; a
    policy with LoRA adapters is its own reference inside ``disable_adapters(policy)``."""
    was_training = reference_model.training
    reference_model.eval()
    device = next(reference_model.parameters()).device
    collate = PreferenceCollator(pad_token_id=0)  # padding is masked and unlabelled: any id
    chosen: list[float] = []
    rejected: list[float] = []
    for start in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + batch_size,
                                                              len(dataset)))])
        rows = (t.to(device) for t in concatenated(batch))
        c, r = causal_lm_logps(reference_model, *rows, average=average).chunk(2)
        chosen += c.tolist()
        rejected += r.tolist()
    reference_model.train(was_training)
    return dataset.with_columns(reference_chosen_logps=chosen, reference_rejected_logps=rejected)
