"""From Wx+b: the perceptron and the MLP in NumPy alone, with every gradient written by hand.

XOR, which no single perceptron can learn, with one hidden layer:

    from wxb.scratch import MLP
    X = [[0, 0], [0, 1], [1, 0], [1, 1]]
    net = MLP([2, 4, 1], activations=["tanh", "sigmoid"], seed=0)
    net.fit(X, [0, 1, 1, 0], epochs=2000, lr=0.5, loss="bce")
    net.predict(X) > 0.5   # XOR
"""

from wxb.scratch.layers import (
    ACTIVATIONS,
    Activation,
    Dense,
    identity,
    identity_derivative,
    relu,
    relu_derivative,
    sigmoid,
    sigmoid_derivative,
    tanh,
    tanh_derivative,
)
from wxb.scratch.losses import (
    LOSSES,
    bce,
    bce_grad,
    bce_with_logits,
    bce_with_logits_grad,
    get_loss,
    mse,
    mse_grad,
)
from wxb.scratch.mlp import MLP
from wxb.scratch.optim import GradientDescent
from wxb.scratch.perceptron import Perceptron, step

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "MLP",
    "Activation",
    "Dense",
    "GradientDescent",
    "Perceptron",
    "bce",
    "bce_grad",
    "bce_with_logits",
    "bce_with_logits_grad",
    "get_loss",
    "identity",
    "identity_derivative",
    "mse",
    "mse_grad",
    "relu",
    "relu_derivative",
    "sigmoid",
    "sigmoid_derivative",
    "step",
    "tanh",
    "tanh_derivative",
]
