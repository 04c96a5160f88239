"""Activations and the Dense layer, each with a forward pass and a backward pass written by hand.

Shapes follow PyTorch: a batch of inputs is a matrix `(batch, features)`, and a Dense layer holds
`W` as `(out_features, in_features)` like `torch.nn.Linear`, so `y = x @ W.T + b` is `Wx + b`
applied to every row at once.
"""

from collections.abc import Callable

import numpy as np

from wxb.errors import ConfigError, DataError

# ----------------------------------------------------------------------------------------------
# Activations: each is a pair (function, derivative), both elementwise on the pre-activation z.


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function 1 / (1 + exp(-z)), elementwise; any shape."""
    # exp(-|z|) never overflows, so both branches stay finite for z = ±1000.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_derivative(z: np.ndarray) -> np.ndarray:
    """d sigmoid(z) / dz = s (1 - s), elementwise; any shape."""
    s = sigmoid(z)
    return s * (1.0 - s)


def tanh(z: np.ndarray) -> np.ndarray:
    """Hyperbolic tangent, elementwise; any shape."""
    return np.tanh(z)


def tanh_derivative(z: np.ndarray) -> np.ndarray:
    """d tanh(z) / dz = 1 - tanh(z)^2, elementwise; any shape."""
    return 1.0 - np.tanh(z) ** 2


def relu(z: np.ndarray) -> np.ndarray:
    """max(z, 0), elementwise; any shape."""
    return np.maximum(z, 0.0)


def relu_derivative(z: np.ndarray) -> np.ndarray:
    """1 where z > 0, else 0 (the value at the kink z = 0 is taken as 0, as PyTorch does)."""
    return (z > 0).astype(z.dtype)


def identity(z: np.ndarray) -> np.ndarray:
    """z itself: the output activation of a regression net or of a net that outputs logits."""
    return z


def identity_derivative(z: np.ndarray) -> np.ndarray:
    """Ones with the shape of z."""
    return np.ones_like(z)


ActivationFn = Callable[[np.ndarray], np.ndarray]

ACTIVATIONS: dict[str, tuple[ActivationFn, ActivationFn]] = {
    "sigmoid": (sigmoid, sigmoid_derivative),
    "tanh": (tanh, tanh_derivative),
    "relu": (relu, relu_derivative),
    "identity": (identity, identity_derivative),
}


def check_batch(x: np.ndarray, n_features: int, owner: str) -> np.ndarray:
    """Return `x` as a float64 matrix `(batch, n_features)`, or raise DataError saying why not.

    `owner` names the model in the message, e.g. "MLP([2, 8, 1])".
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != n_features:
        raise DataError(
            f"{owner} expects X of shape (batch, {n_features}), got shape {x.shape}; "
            f"pass one row of {n_features} features per example"
        )
    return x


class Activation:
    """An activation as a layer: remembers its input z so that backward can apply f'(z)."""

    def __init__(self, name: str):
        if name not in ACTIVATIONS:
            raise ConfigError(
                f"unknown activation {name!r}; use one of {', '.join(sorted(ACTIVATIONS))}"
            )
        self.name = name
        self.fn, self.derivative = ACTIVATIONS[name]

    def forward(self, z: np.ndarray) -> np.ndarray:
        """(batch, features) -> (batch, features)."""
        self.z = z
        return self.fn(z)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """dL/da (batch, features) -> dL/dz (batch, features); chain rule, elementwise."""
        return grad_output * self.derivative(self.z)


class Dense:
    """Fully connected layer y = x W^T + b, with W of shape (out_features, in_features).

    After `backward`, `dW` and `db` hold dL/dW and dL/db summed over the batch.
    """

    def __init__(self, in_features: int, out_features: int, rng: np.random.Generator):
        # Glorot/Xavier uniform: keeps the variance of activations roughly constant from layer
        # to layer, so tanh and sigmoid units start in their steep middle, not saturated.
        limit = np.sqrt(6.0 / (in_features + out_features))
        self.W = rng.uniform(-limit, limit, size=(out_features, in_features))
        self.b = np.zeros(out_features)
        self.dW = np.zeros_like(self.W)
        self.db = np.zeros_like(self.b)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(batch, in_features) -> (batch, out_features); caches x for backward."""
        self.x = x
        return x @ self.W.T + self.b

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """dL/dy (batch, out_features) -> dL/dx (batch, in_features); stores dW and db.

        y[n, o] = sum_i x[n, i] W[o, i] + b[o], so dL/dW = grad^T x, dL/db = sum over the
        batch of grad, and dL/dx = grad W.
        """
        self.dW = grad_output.T @ self.x
        self.db = grad_output.sum(axis=0)
        return grad_output @ self.W

    def parameters(self) -> list[np.ndarray]:
        """[W (out, in), b (out,)]: the arrays themselves, so an optimizer updates them in place."""
        return [self.W, self.b]

    def gradients(self) -> list[np.ndarray]:
        """[dW, db], in the order of `parameters()`, from the last `backward`."""
        return [self.dW, self.db]
