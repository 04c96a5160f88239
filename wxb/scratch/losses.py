"""Losses, each a pair (value, gradient with respect to the prediction).

Every loss is the mean over all elements of `(batch, outputs)`, like PyTorch's default
`reduction="mean"`, so its gradient carries a 1 / (number of elements) factor.
"""

from collections.abc import Callable

import numpy as np

from wxb.errors import ConfigError
from wxb.scratch.layers import sigmoid

# Probabilities are clipped into [EPS, 1 - EPS] so log(p) stays finite and the gradient
# 1 / (p (1 - p)) stays below ~1e7 when a sigmoid output saturates at exactly 0 or 1.
EPS = 1e-7


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error mean((pred - target)^2); pred and target have the same shape."""
    return float(np.mean((pred - target) ** 2))


def mse_grad(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """dMSE/dpred = 2 (pred - target) / N, same shape as pred."""
    return 2.0 * (pred - target) / pred.size


def bce(pred: np.ndarray, target: np.ndarray) -> float:
    """Binary cross-entropy of probabilities: -mean(t log p + (1 - t) log(1 - p))."""
    p = np.clip(pred, EPS, 1.0 - EPS)
    return float(-np.mean(target * np.log(p) + (1.0 - target) * np.log(1.0 - p)))


def bce_grad(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """dBCE/dp = (p - t) / (p (1 - p)) / N, same shape as pred."""
    p = np.clip(pred, EPS, 1.0 - EPS)
    return (p - target) / (p * (1.0 - p)) / pred.size


def bce_with_logits(logits: np.ndarray, target: np.ndarray) -> float:
    """Binary cross-entropy of sigmoid(logits), computed without ever forming the probability.

    -[t log s(z) + (1 - t) log(1 - s(z))] simplifies to max(z, 0) - t z + log(1 + exp(-|z|)),
    which never overflows and never takes log(0), even for z = ±1000.
    """
    z = logits
    return float(np.mean(np.maximum(z, 0.0) - target * z + np.log1p(np.exp(-np.abs(z)))))


def bce_with_logits_grad(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    """d/dz = (sigmoid(z) - t) / N: the sigmoid's derivative cancels the log's, no division."""
    return (sigmoid(logits) - target) / logits.size


LossFn = Callable[[np.ndarray, np.ndarray], float]
LossGrad = Callable[[np.ndarray, np.ndarray], np.ndarray]

LOSSES: dict[str, tuple[LossFn, LossGrad]] = {
    "mse": (mse, mse_grad),
    "bce": (bce, bce_grad),
    "bce_with_logits": (bce_with_logits, bce_with_logits_grad),
}


def get_loss(name: str) -> tuple[LossFn, LossGrad]:
    """(value, gradient) of the loss called `name`; ConfigError for an unknown name."""
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; use one of {', '.join(sorted(LOSSES))}")
    return LOSSES[name]
