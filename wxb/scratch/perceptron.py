"""Rosenblatt's perceptron: a step function of Wx + b, trained by the perceptron learning rule."""

import numpy as np

from wxb.errors import DataError
from wxb.scratch.layers import check_batch


def step(z: np.ndarray) -> np.ndarray:
    """Heaviside step: 1 where z >= 0, else 0 (as int)."""
    return (z >= 0).astype(np.int64)


class Perceptron:
    """One unit y_hat = step(w . x + b) for binary labels 0/1.

    Weights start at zero (the classic choice: the rule needs no symmetry breaking), so training
    is deterministic. By the perceptron convergence theorem `fit` reaches zero errors on any
    linearly separable data (AND, OR); on XOR it never does, since no line separates it.
    """

    def __init__(self, n_features: int, lr: float = 1.0):
        self.w = np.zeros(n_features)
        self.b = 0.0
        self.lr = lr

    def predict(self, X: np.ndarray) -> np.ndarray:
        """X (batch, n_features) -> labels (batch,) of 0/1."""
        X = check_batch(X, self.w.shape[0], f"Perceptron(n_features={self.w.shape[0]})")
        return step(X @ self.w + self.b)

    def fit(self, X: np.ndarray, y: np.ndarray, epochs: int = 100) -> list[int]:
        """Train online, one example at a time, until an epoch makes no error or `epochs` end.

        X: (batch, n_features); y: (batch,) of 0/1. Returns the number of misclassified
        examples in each epoch, so its length is the number of epochs used and a last entry of
        0 means the data was separated.
        """
        X = check_batch(X, self.w.shape[0], f"Perceptron(n_features={self.w.shape[0]})")
        y = np.asarray(y)
        if y.shape != (X.shape[0],) or not np.isin(y, (0, 1)).all():
            raise DataError(
                f"Perceptron.fit expects y of shape ({X.shape[0]},) with labels 0/1, "
                f"got shape {y.shape} with values {np.unique(y)[:5].tolist()}"
            )
        errors_per_epoch = []
        for _ in range(epochs):
            errors = 0
            for x_i, y_i in zip(X, y, strict=True):
                # The update is zero when the prediction is right, and moves the boundary
                # towards x_i (y - y_hat = +1) or away from it (-1) when it is wrong.
                delta = y_i - step(x_i @ self.w + self.b)
                self.w += self.lr * delta * x_i
                self.b += self.lr * delta
                errors += int(delta != 0)
            errors_per_epoch.append(errors)
            if errors == 0:
                break
        return errors_per_epoch
