"""wxb.scratch: every hand-written gradient against finite differences and torch autograd."""

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wxb.errors import ConfigError, DataError
from wxb.scratch import (
    ACTIVATIONS,
    LOSSES,
    MLP,
    Activation,
    Dense,
    GradientDescent,
    Perceptron,
    bce,
    bce_grad,
    bce_with_logits,
    bce_with_logits_grad,
)

TOL = 1e-6
EPS = 1e-6  # central-difference step: error O(EPS^2) from curvature, O(1e-16 / EPS) from rounding

TORCH_ACTIVATIONS = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "identity": lambda z: z,
}
TORCH_LOSSES = {
    "mse": F.mse_loss,
    "bce": F.binary_cross_entropy,
    "bce_with_logits": F.binary_cross_entropy_with_logits,
}
# The output activation each loss is used with (the one MLP.fit insists on for the BCEs).
OUTPUT_FOR_LOSS = {"mse": "tanh", "bce": "sigmoid", "bce_with_logits": "identity"}

X_BOOL = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
Y_AND = np.array([0, 0, 0, 1])
Y_OR = np.array([0, 1, 1, 1])
Y_XOR = np.array([0, 1, 1, 0])


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b| / max(|a| + |b|): scale-free, and 0 when both are exactly zero."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a) + np.abs(b)), 1e-300))


def numerical_grad(f: Callable[[], float], x: np.ndarray) -> np.ndarray:
    """Central differences of the scalar f() with respect to every entry of x, nudged in place."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + EPS
        f_plus = f()
        x[i] = old - EPS
        f_minus = f()
        x[i] = old
        grad[i] = (f_plus - f_minus) / (2 * EPS)
    return grad


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Normal samples with |z| >= 0.1, so ReLU's kink at 0 is never inside a finite difference."""
    z = rng.normal(size=shape)
    return np.where(np.abs(z) < 0.1, 0.5, z)


# ---------------------------------------------------------------------------------- activations


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_derivative(name):
    fn, derivative = ACTIVATIONS[name]
    z = away_from_zero(np.random.default_rng(0), (5, 7))

    numeric = (fn(z + EPS) - fn(z - EPS)) / (2 * EPS)
    assert rel_error(derivative(z), numeric) < TOL

    zt = torch.tensor(z, requires_grad=True)
    out = TORCH_ACTIVATIONS[name](zt)
    assert rel_error(fn(z), out.detach().numpy()) < TOL
    out.sum().backward()
    assert rel_error(derivative(z), zt.grad.numpy()) < TOL

    # As a layer, backward multiplies the upstream gradient by f'(z).
    layer, g = Activation(name), np.random.default_rng(1).normal(size=z.shape)
    layer.forward(z)
    assert rel_error(layer.backward(g), g * derivative(z)) < TOL


def test_sigmoid_is_stable_far_from_zero():
    fn, derivative = ACTIVATIONS["sigmoid"]
    z = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        s, ds = fn(z), derivative(z)
    assert rel_error(s, torch.sigmoid(torch.tensor(z)).numpy()) < TOL
    assert np.all(np.isfinite(ds))


# ----------------------------------------------------------------------------------------- losses


def loss_inputs(name: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, target) in the range each loss is meant for, shape (6, 3)."""
    if name == "mse":
        return rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    target = rng.integers(0, 2, size=(6, 3)).astype(np.float64)
    if name == "bce":
        return rng.uniform(0.05, 0.95, size=(6, 3)), target
    return 3 * rng.normal(size=(6, 3)), target


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_gradient(name):
    loss_fn, loss_grad = LOSSES[name]
    pred, target = loss_inputs(name, np.random.default_rng(0))

    numeric = numerical_grad(lambda: loss_fn(pred, target), pred)
    assert rel_error(loss_grad(pred, target), numeric) < TOL

    pt = torch.tensor(pred, requires_grad=True)
    value = TORCH_LOSSES[name](pt, torch.tensor(target))
    value.backward()
    assert rel_error(loss_fn(pred, target), value.item()) < TOL
    assert rel_error(loss_grad(pred, target), pt.grad.numpy()) < TOL


def test_bce_clips_probabilities_of_exactly_zero_and_one():
    pred, target = np.array([[0.0], [1.0], [0.5]]), np.array([[1.0], [0.0], [1.0]])
    assert np.isfinite(bce(pred, target))
    assert np.all(np.isfinite(bce_grad(pred, target)))


def test_bce_with_logits_is_stable_for_huge_logits():
    z, t = np.array([[-1000.0], [1000.0], [30.0]]), np.array([[1.0], [0.0], [1.0]])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        value, grad = bce_with_logits(z, t), bce_with_logits_grad(z, t)
    reference = F.binary_cross_entropy_with_logits(torch.tensor(z), torch.tensor(t)).item()
    assert rel_error(value, reference) < TOL
    assert rel_error(grad, [[-1 / 3], [1 / 3], [0.0]]) < 1e-12


# ----------------------------------------------------------------------------------- dense layer


def test_dense_gradients():
    rng = np.random.default_rng(0)
    layer = Dense(4, 3, rng)
    layer.b[:] = rng.normal(size=3)
    x, g = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))

    # L = sum(y * g) has dL/dy = g, so backward(g) must return dL/dx and store dL/dW, dL/db.
    def loss() -> float:
        return float(np.sum(layer.forward(x) * g))

    layer.forward(x)
    dx = layer.backward(g)
    dW, db = layer.dW.copy(), layer.db.copy()
    assert rel_error(dW, numerical_grad(loss, layer.W)) < TOL
    assert rel_error(db, numerical_grad(loss, layer.b)) < TOL
    assert rel_error(dx, numerical_grad(loss, x)) < TOL

    W, b = (torch.tensor(p, requires_grad=True) for p in layer.parameters())
    xt = torch.tensor(x, requires_grad=True)
    y = xt @ W.T + b
    assert rel_error(layer.forward(x), y.detach().numpy()) < TOL
    (y * torch.tensor(g)).sum().backward()
    for ours, theirs in [(dW, W.grad), (db, b.grad), (dx, xt.grad)]:
        assert rel_error(ours, theirs.numpy()) < TOL


# ------------------------------------------------------------------------------------- whole MLP


def torch_loss_and_grads(net: MLP, X: np.ndarray, y: np.ndarray, loss: str):
    """The same network in torch, float64, with net's weights: (loss, param grads, input grad)."""
    params = [torch.tensor(p, requires_grad=True) for p in net.parameters()]
    h = xt = torch.tensor(X, requires_grad=True)
    for (W, b), name in zip(
        zip(params[::2], params[1::2], strict=True), net.activations, strict=True
    ):
        h = TORCH_ACTIVATIONS[name](h @ W.T + b)
    value = TORCH_LOSSES[loss](h, torch.tensor(y))
    value.backward()
    return value.item(), [p.grad.numpy() for p in params], xt.grad.numpy()


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("hidden", sorted(ACTIVATIONS))
@pytest.mark.parametrize("sizes", [[3, 2], [3, 4, 2], [3, 5, 4, 2]], ids=["1", "2", "3"])
def test_mlp_gradients(sizes, hidden, loss):
    net = MLP(sizes, activations=hidden, output_activation=OUTPUT_FOR_LOSS[loss], seed=0)
    rng = np.random.default_rng(1)
    for b in net.parameters()[1::2]:
        b[:] = 0.1 * rng.normal(size=b.shape)  # non-zero biases, so db is really exercised
    X = rng.normal(size=(5, sizes[0]))
    y = loss_inputs(loss, rng)[1][:5, : sizes[-1]]
    loss_fn, loss_grad = LOSSES[loss]

    out = net.forward(X)
    dX = net.backward(loss_grad(out, y))
    grads = [g.copy() for g in net.gradients()]

    def objective() -> float:
        return loss_fn(net.forward(X), y)

    for p, g in zip(net.parameters(), grads, strict=True):
        assert rel_error(g, numerical_grad(objective, p)) < TOL
    assert rel_error(dX, numerical_grad(objective, X)) < TOL

    value, torch_grads, torch_dX = torch_loss_and_grads(net, X, y, loss)
    assert rel_error(loss_fn(out, y), value) < TOL
    for g, tg in zip(grads, torch_grads, strict=True):
        assert rel_error(g, tg) < TOL
    assert rel_error(dX, torch_dX) < TOL


def test_activation_list_equals_hidden_plus_output():
    a = MLP([2, 3, 3, 1], activations=["relu", "relu", "sigmoid"], seed=7)
    b = MLP([2, 3, 3, 1], activations="relu", output_activation="sigmoid", seed=7)
    assert a.activations == b.activations == ["relu", "relu", "sigmoid"]
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(p, q)


# -------------------------------------------------------------------------------------- optimizer


def test_gradient_descent_updates_in_place_with_momentum():
    p = np.array([1.0, -2.0])
    opt = GradientDescent([p], lr=0.1, momentum=0.9)
    opt.step([np.array([1.0, 1.0])])
    np.testing.assert_allclose(p, [0.9, -2.1])
    opt.step([np.array([1.0, 1.0])])  # velocity 0.9 * 1 + 1 = 1.9
    np.testing.assert_allclose(p, [0.71, -2.29])


# --------------------------------------------------------------------------------------- learning


@pytest.mark.parametrize("y", [Y_AND, Y_OR], ids=["AND", "OR"])
def test_perceptron_learns_linearly_separable(y):
    perceptron = Perceptron(2)
    errors = perceptron.fit(X_BOOL, y, epochs=100)
    assert errors[-1] == 0 and len(errors) < 100
    np.testing.assert_array_equal(perceptron.predict(X_BOOL), y)


def test_perceptron_cannot_learn_xor():
    perceptron = Perceptron(2)
    errors = perceptron.fit(X_BOOL, Y_XOR, epochs=200)
    assert len(errors) == 200 and min(errors) > 0
    # No line separates XOR, so at best 3 of the 4 points are right.
    assert np.mean(perceptron.predict(X_BOOL) == Y_XOR) <= 0.75


@pytest.mark.parametrize("y", [Y_AND, Y_OR], ids=["AND", "OR"])
def test_mlp_without_hidden_layer_learns_and_or(y):
    net = MLP([2, 1], activations=["sigmoid"], seed=0)
    net.fit(X_BOOL, y, epochs=2000, lr=1.0, loss="bce")
    np.testing.assert_array_equal((net.predict(X_BOOL) > 0.5).ravel(), y)


@pytest.mark.parametrize(
    ("output", "loss", "threshold"),
    [("sigmoid", "bce", 0.5), ("identity", "bce_with_logits", 0.0), ("sigmoid", "mse", 0.5)],
)
def test_mlp_learns_xor(output, loss, threshold):
    net = MLP([2, 4, 1], activations="tanh", output_activation=output, seed=0)
    history = net.fit(X_BOOL, Y_XOR, epochs=2000, lr=0.5, loss=loss, momentum=0.5)
    assert history[-1] < history[0]
    np.testing.assert_array_equal((net.predict(X_BOOL) > threshold).ravel(), Y_XOR)


# -------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda: MLP([2, 3, 1], activations="swish"), ConfigError, "'swish'"),
        (lambda: MLP([2, 3, 1], activations=["tanh"]), ConfigError, "one activation per layer"),
        (lambda: MLP([2]), ConfigError, "[2]"),
        (lambda: MLP([2, 0, 1]), ConfigError, "positive"),
        (
            lambda: MLP([2, 1], activations=["tanh"], output_activation="sigmoid"),
            ConfigError,
            "output_activation",
        ),
        (lambda: MLP([2, 3, 1]).forward(np.ones((4, 3))), DataError, "(batch, 2)"),
        (lambda: MLP([2, 3, 1]).forward(np.ones(2)), DataError, "(batch, 2)"),
        (lambda: MLP([2, 1]).fit(X_BOOL, Y_XOR, loss="hinge"), ConfigError, "'hinge'"),
        (lambda: MLP([2, 1]).fit(X_BOOL, Y_XOR, loss="bce"), ConfigError, "'sigmoid'"),
        (lambda: MLP([2, 1]).fit(X_BOOL, Y_XOR[:3]), DataError, "(4, 1)"),
        (lambda: MLP([2, 1]).fit(X_BOOL, Y_XOR, lr=0), ConfigError, "lr=0"),
        (lambda: Perceptron(3).fit(X_BOOL, Y_AND), DataError, "(batch, 3)"),
        (lambda: Perceptron(2).fit(X_BOOL, [0, 1, 2, 1]), DataError, "0/1"),
        (lambda: Perceptron(2).predict(np.ones((1, 5))), DataError, "(batch, 2)"),
        (lambda: GradientDescent([np.ones(2)]).step([np.ones(3)]), DataError, "shape"),
        (lambda: GradientDescent([np.ones(2)]).step([]), DataError, "0 gradients"),
        (lambda: GradientDescent([np.ones(2)], momentum=1.0), ConfigError, "momentum=1.0"),
    ],
)
def test_bad_input_raises_one_clear_line(make, error, words):
    with pytest.raises(error) as info:
        make()
    message = str(info.value)
    assert words in message and "\n" not in message
