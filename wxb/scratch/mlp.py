"""A multi-layer perceptron of any depth, with backpropagation written by hand.

The network is a list of layers, Dense, Activation, Dense, Activation, ...; `forward` runs them
in order and `backward` runs them in reverse, each turning dL/d(its output) into
dL/d(its input) by the chain rule and keeping dL/dW, dL/db on the way.
"""

from collections.abc import Sequence

import numpy as np

from wxb.errors import ConfigError, DataError
from wxb.scratch.layers import Activation, Dense, check_batch
from wxb.scratch.losses import get_loss
from wxb.scratch.optim import GradientDescent

# A probability loss needs the matching output: BCE reads probabilities (sigmoid output), while
# BCE-with-logits applies the sigmoid itself, so its net must output raw logits.
OUTPUT_FOR_LOSS = {"bce": "sigmoid", "bce_with_logits": "identity"}


class MLP:
    """Fully connected net: sizes [in, hidden..., out] give len(sizes) - 1 Dense layers.

    Activations, one per Dense layer, are given either as a list of names,
    `MLP([2, 8, 1], activations=["tanh", "sigmoid"])`, or as one hidden activation plus an
    output activation, `MLP([2, 8, 1], activations="tanh", output_activation="sigmoid")`
    (the output activation defaults to "identity"). `seed` makes the initial weights
    reproducible.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activations: str | Sequence[str] = "tanh",
        output_activation: str | None = None,
        seed: int | None = 0,
    ):
        sizes = list(sizes)
        if len(sizes) < 2 or any(not isinstance(n, (int, np.integer)) or n < 1 for n in sizes):
            raise ConfigError(
                f"MLP sizes={sizes} must be at least two positive ints [in, ..., out], "
                "e.g. [2, 8, 1]"
            )
        n_layers = len(sizes) - 1
        if isinstance(activations, str):
            names = [activations] * (n_layers - 1) + [output_activation or "identity"]
        elif output_activation is not None:
            raise ConfigError(
                f"output_activation={output_activation!r} given with a list of activations; "
                "put the output activation last in the list, or pass one hidden activation name"
            )
        else:
            names = list(activations)
        if len(names) != n_layers:
            raise ConfigError(
                f"MLP sizes={sizes} has {n_layers} layers but activations={names} names "
                f"{len(names)}; give one activation per layer"
            )
        rng = np.random.default_rng(seed)
        self.sizes = sizes
        self.activations = names
        self.layers: list[Dense | Activation] = []
        for n_in, n_out, name in zip(sizes[:-1], sizes[1:], names, strict=True):
            self.layers += [Dense(n_in, n_out, rng), Activation(name)]

    def __repr__(self) -> str:
        return f"MLP({self.sizes}, activations={self.activations})"

    def forward(self, X: np.ndarray) -> np.ndarray:
        """X (batch, sizes[0]) -> output (batch, sizes[-1]); caches what backward needs."""
        h = check_batch(X, self.sizes[0], repr(self))
        for layer in self.layers:
            h = layer.forward(h)
        return h

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """dL/d(output) (batch, sizes[-1]) -> dL/dX (batch, sizes[0]).

        Fills every Dense layer's dW and db (read them with `gradients()`); call after `forward`
        on the same batch.
        """
        grad = grad_output
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    def parameters(self) -> list[np.ndarray]:
        """[W1, b1, W2, b2, ...]: the live arrays, for an optimizer to update in place."""
        return [p for layer in self.layers if isinstance(layer, Dense) for p in layer.parameters()]

    def gradients(self) -> list[np.ndarray]:
        """[dW1, db1, dW2, db2, ...] from the last `backward`, in the order of `parameters()`."""
        return [g for layer in self.layers if isinstance(layer, Dense) for g in layer.gradients()]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The net's output (batch, sizes[-1]): probabilities after a sigmoid, else raw values."""
        return self.forward(X)

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        epochs: int = 1000,
        lr: float = 0.1,
        loss: str = "mse",
        momentum: float = 0.0,
    ) -> list[float]:
        """Full-batch gradient descent on `loss` ("mse", "bce" or "bce_with_logits").

        X: (batch, sizes[0]); y: (batch, sizes[-1]), or (batch,) for one output.
        Returns the loss before each epoch's update.
        """
        loss_fn, loss_grad = get_loss(loss)
        wanted = OUTPUT_FOR_LOSS.get(loss, self.activations[-1])
        if self.activations[-1] != wanted:
            raise ConfigError(
                f"loss {loss!r} needs output activation {wanted!r}, but {self!r} ends in "
                f"{self.activations[-1]!r}"
            )
        X = check_batch(X, self.sizes[0], repr(self))
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 1 and self.sizes[-1] == 1:
            y = y[:, None]
        if y.shape != (X.shape[0], self.sizes[-1]):
            raise DataError(
                f"{self!r} with X of {X.shape[0]} rows expects y of shape "
                f"({X.shape[0]}, {self.sizes[-1]}), got {y.shape}"
            )
        optimizer = GradientDescent(self.parameters(), lr=lr, momentum=momentum)
        history = []
        for _ in range(epochs):
            out = self.forward(X)
            history.append(loss_fn(out, y))
            self.backward(loss_grad(out, y))
            optimizer.step(self.gradients())
        return history
