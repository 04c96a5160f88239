"""GloVe (Pennington, Socher & Manning, 2014): word vectors fitted to the log co-occurrence counts.

For every pair of words (i, j) seen together (X_ij > 0), a word vector w_i, a context vector
w̃_j and two biases should make

    w_i · w̃_j + b_i + b̃_j  ≈  log X_ij

and the fit is the paper's weighted least squares (its equation 8):

    J = Σ_{X_ij > 0} f(X_ij) (w_i · w̃_j + b_i + b̃_j − log X_ij)²

    f(x) = (x / x_max)^α  if x < x_max  else 1          (x_max = 100, α = 0.75)

f keeps rare, noisy pairs from counting as much as frequent ones and caps the weight of the
very frequent ones, so "the"-pairs do not dominate. The pairs with X_ij = 0 are left out
(log 0 is undefined), which is why the cost only ever visits the nonzeros of X.

``glove_loss`` is the paper's J, with no factor ½. glove.c's printed "cost" is the mean of
½·f·diff² over the nonzeros, half of ``glove_loss(...) / nonzeros``; its update steps along the
gradient of ½J, which the training loop (``wxb.tasks.word_vectors.glove``) does too, so that a
learning rate means there what glove.c's ``-eta`` means.

The course's version of this loss had no square and no weighting (a plain sum of the
residuals w_i·w̃_j + b_i + b̃_j − log X_ij), which is not bounded below and fits nothing;
this one is the paper's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def glove_weighting(counts: torch.Tensor, x_max: float = 100.0,
                    alpha: float = 0.75) -> torch.Tensor:
    """f(x) = (x / x_max)^α below x_max, 1 from x_max on; ``counts`` (n,) -> (n,)."""
    return torch.where(counts < x_max, (counts / x_max) ** alpha, torch.ones_like(counts))


def glove_loss(weight: torch.Tensor, context_weight: torch.Tensor, bias: torch.Tensor,
               context_bias: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
               counts: torch.Tensor, *, x_max: float = 100.0, alpha: float = 0.75) -> torch.Tensor:
    """The paper's J over the entries X[rows[k], cols[k]] = counts[k] > 0 (a scalar).

    weight, context_weight: (vocab, dim); bias, context_bias: (vocab,);
    rows, cols: (n,) int64; counts: (n,) positive.
    """
    diff = residuals(weight, context_weight, bias, context_bias, rows, cols, counts.log())
    return (glove_weighting(counts, x_max, alpha) * diff * diff).sum()


def residuals(weight: torch.Tensor, context_weight: torch.Tensor, bias: torch.Tensor,
              context_bias: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
              log_counts: torch.Tensor) -> torch.Tensor:
    """w_i · w̃_j + b_i + b̃_j − log X_ij for each entry: (n,)."""
    dot = (weight.index_select(0, rows) * context_weight.index_select(0, cols)).sum(-1)
    return dot + bias.index_select(0, rows) + context_bias.index_select(0, cols) - log_counts


@dataclass
class GloVeGradients:
    """∂J for a batch of entries, one row per entry (not yet summed over repeated words):
    ``weight[k]`` is the share of entry k in ∂J/∂w_{rows[k]}, and so on. (n, dim) / (n,)."""

    loss: torch.Tensor  # J over the batch, a scalar
    weight: torch.Tensor
    context_weight: torch.Tensor
    bias: torch.Tensor
    context_bias: torch.Tensor


class GloVe(nn.Module):
    """The four tables GloVe fits. ``vectors()`` is W + W̃, the paper's recommended output.

    Initialised as glove.c does: every value uniform in [−0.5, 0.5) / dim, biases included.
    """

    def __init__(self, vocab_size: int, vector_size: int = 100, *,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()

        def table(*shape: int) -> nn.Parameter:
            return nn.Parameter((torch.rand(*shape, generator=generator) - 0.5) / vector_size)

        self.weight = table(vocab_size, vector_size)          # w_i   (vocab, dim)
        self.context_weight = table(vocab_size, vector_size)  # w̃_j   (vocab, dim)
        self.bias = table(vocab_size)                         # b_i   (vocab,)
        self.context_bias = table(vocab_size)                 # b̃_j   (vocab,)

    def forward(self, rows: torch.Tensor, cols: torch.Tensor, counts: torch.Tensor, *,
                x_max: float = 100.0, alpha: float = 0.75) -> torch.Tensor:
        """J over the given nonzeros (see ``glove_loss``)."""
        return glove_loss(self.weight, self.context_weight, self.bias, self.context_bias,
                          rows, cols, counts, x_max=x_max, alpha=alpha)

    @torch.no_grad()
    def gradients(self, rows: torch.Tensor, cols: torch.Tensor, log_counts: torch.Tensor,
                  weights: torch.Tensor) -> GloVeGradients:
        """J and its gradient, written out, for a batch of entries whose log X and f(X) are
        given (the training loop computes both once per corpus).

        With diff_k = w_i·w̃_j + b_i + b̃_j − log X_ij and J = Σ_k f_k diff_k²:
        ∂J/∂w_i = 2 f diff w̃_j,  ∂J/∂w̃_j = 2 f diff w_i,  ∂J/∂b_i = ∂J/∂b̃_j = 2 f diff.
        """
        w = self.weight.index_select(0, rows)  # (n, dim)
        c = self.context_weight.index_select(0, cols)  # (n, dim)
        diff = ((w * c).sum(-1) + self.bias.index_select(0, rows)
                + self.context_bias.index_select(0, cols) - log_counts)
        fdiff = weights * diff
        twice = 2 * fdiff
        return GloVeGradients(loss=(fdiff * diff).sum(), weight=twice[:, None] * c,
                              context_weight=twice[:, None] * w, bias=twice,
                              context_bias=twice)

    @torch.no_grad()
    def vectors(self) -> torch.Tensor:
        """W + W̃ (vocab, dim): the sum the paper found slightly better than W alone."""
        return self.weight + self.context_weight
