"""Gradient descent, updating NumPy parameter arrays in place."""

import numpy as np

from wxb.errors import ConfigError, DataError


class GradientDescent:
    """p <- p - lr * v with v <- momentum * v + grad (PyTorch's SGD convention).

    With momentum 0 this is plain gradient descent, p <- p - lr * grad. Momentum keeps a running
    sum of past gradients, which speeds up travel along shallow valleys of the loss.
    """

    def __init__(self, params: list[np.ndarray], lr: float = 0.1, momentum: float = 0.0):
        if lr <= 0:
            raise ConfigError(f"learning rate lr={lr} must be > 0, e.g. lr=0.1")
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"momentum={momentum} must be in [0, 1), e.g. momentum=0.9")
        self.params = params
        self.lr = lr
        self.momentum = momentum
        self.velocity = [np.zeros_like(p) for p in params]

    def step(self, grads: list[np.ndarray]) -> None:
        """Move every parameter against its gradient; `grads` is in the order of `params`."""
        if len(grads) != len(self.params):
            raise DataError(
                f"step() got {len(grads)} gradients for {len(self.params)} parameters; "
                "pass one gradient per parameter, in the same order"
            )
        for i, (p, g, v) in enumerate(zip(self.params, grads, self.velocity, strict=True)):
            if g.shape != p.shape:
                raise DataError(
                    f"gradient {i} has shape {g.shape} but its parameter has shape {p.shape}"
                )
            v *= self.momentum
            v += g
            p -= self.lr * v
