"""wxb.nn.LSTM / GRU / RNN are drop-ins for torch.nn's: same signature and defaults, same
parameter names, and on the same weights the same outputs and final states in every layout
(time-major, batch first, unbatched, packed), with and without an initial state."""

from __future__ import annotations

import inspect
import itertools
import typing

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import wxb.nn
from wxb.errors import ConfigError

KINDS = {"lstm": (wxb.nn.LSTM, torch.nn.LSTM, {}),
         "gru": (wxb.nn.GRU, torch.nn.GRU, {}),
         "rnn_tanh": (wxb.nn.RNN, torch.nn.RNN, {"nonlinearity": "tanh"}),
         "rnn_relu": (wxb.nn.RNN, torch.nn.RNN, {"nonlinearity": "relu"})}
IN, HIDDEN, SEQ, BATCH = 5, 7, 6, 3


def pair(kind: str, **kwargs):
    """A torch layer and its wxb twin holding the torch layer's weights."""
    ours_cls, torch_cls, extra = KINDS[kind]
    torch.manual_seed(0)
    ref = torch_cls(IN, HIDDEN, **extra, **kwargs)
    ours = ours_cls(IN, HIDDEN, **extra, **kwargs)
    ours.load_state_dict(ref.state_dict())  # strict: same names and shapes
    return ours, ref


def initial_state(kind: str, layers: int, directions: int, batch: tuple[int, ...]):
    shape = (layers * directions, *batch, HIDDEN)
    if kind == "lstm":
        return torch.randn(shape), torch.randn(shape)
    return torch.randn(shape)


def flat(state):
    return list(state) if isinstance(state, tuple) else [state]


def assert_same(ours_out, ref_out):
    (out, state), (out_ref, state_ref) = ours_out, ref_out
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(flat(state), flat(state_ref), strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind, batch_first, layers, bidirectional, given_hx",
                         list(itertools.product(KINDS, (False, True), (1, 2), (False, True),
                                                (False, True))))
def test_outputs_and_final_states_equal_torch(kind, batch_first, layers, bidirectional,
                                              given_hx):
    ours, ref = pair(kind, num_layers=layers, batch_first=batch_first,
                     bidirectional=bidirectional)
    x = torch.randn((BATCH, SEQ, IN) if batch_first else (SEQ, BATCH, IN))
    hx = initial_state(kind, layers, 2 if bidirectional else 1, (BATCH,)) if given_hx else None
    result = ours(x, hx)
    assert_same(result, ref(x, hx))
    assert result[0].shape == ((BATCH, SEQ) if batch_first else (SEQ, BATCH)) + (
        HIDDEN * (2 if bidirectional else 1),)
    if not batch_first:
        # the time-major output is contiguous, so torch-style .view() works on it
        result[0].view(SEQ, BATCH, 2 if bidirectional else 1, HIDDEN)


@pytest.mark.parametrize("kind", KINDS)
def test_unbatched_input(kind):
    ours, ref = pair(kind, num_layers=2, bidirectional=True)
    x = torch.randn(SEQ, IN)
    assert_same(ours(x), ref(x))
    hx = initial_state(kind, 2, 2, ())
    out, state = ours(x, hx)
    assert_same((out, state), ref(x, hx))
    assert out.shape == (SEQ, 2 * HIDDEN) and flat(state)[0].shape == (4, HIDDEN)


@pytest.mark.parametrize("kind, bidirectional", list(itertools.product(KINDS, (False, True))))
def test_packed_sequences_match_torch(kind, bidirectional):
    ours, ref = pair(kind, num_layers=2, bidirectional=bidirectional)
    x = torch.randn(SEQ, 4, IN)
    packed = pack_padded_sequence(x, torch.tensor([3, 6, 1, 6]), enforce_sorted=False)
    hx = initial_state(kind, 2, 2 if bidirectional else 1, (4,))
    (out, state), (out_ref, state_ref) = ours(packed, hx), ref(packed, hx)
    assert torch.equal(out.batch_sizes, out_ref.batch_sizes)
    assert torch.equal(out.sorted_indices, out_ref.sorted_indices)
    assert_same((out.data, state), (out_ref.data, state_ref))


@pytest.mark.parametrize("kind", KINDS)
def test_state_dicts_move_both_ways(kind):
    ours_cls, torch_cls, extra = KINDS[kind]
    ours = ours_cls(IN, HIDDEN, 2, bidirectional=True, **extra)
    ref = torch_cls(IN, HIDDEN, 2, bidirectional=True, **extra)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in ref.state_dict().items()}
    assert "weight_hh_l1_reverse" in ours.state_dict()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(SEQ, BATCH, IN)
    assert_same(ours(x), ref(x))


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_the_signature_and_defaults_are_torchs(kind):
    ours_cls, torch_cls, _ = KINDS[kind]
    # torch declares the real signature as the first @overload of __init__
    torch_sig = inspect.signature(typing.get_overloads(torch_cls.__init__)[0])
    ours_sig = inspect.signature(ours_cls.__init__)
    assert list(ours_sig.parameters) == list(torch_sig.parameters)
    assert {k: p.default for k, p in ours_sig.parameters.items()} == {
        k: p.default for k, p in torch_sig.parameters.items()}


def test_rnn_takes_nonlinearity_as_its_fourth_argument_and_relu_differs_from_tanh():
    relu = wxb.nn.RNN(IN, HIDDEN, 1, "relu")
    assert relu.nonlinearity == "relu" and relu.bias is True
    tanh = wxb.nn.RNN(IN, HIDDEN, 1, "tanh")
    tanh.load_state_dict(relu.state_dict())
    x = torch.randn(SEQ, BATCH, IN)
    assert not torch.allclose(relu(x)[0], tanh(x)[0])
    assert bool((relu(x)[0] >= 0).all())
    with pytest.raises(ConfigError, match="unknown nonlinearity 'sigmoid'"):
        wxb.nn.RNN(IN, HIDDEN, nonlinearity="sigmoid")


def test_device_dtype_and_repr():
    lstm = wxb.nn.LSTM(IN, HIDDEN, 2, batch_first=True, dtype=torch.float64)
    assert lstm.weight_ih_l0.dtype == torch.float64
    assert lstm(torch.randn(BATCH, SEQ, IN, dtype=torch.float64))[0].dtype == torch.float64
    assert repr(lstm) == "LSTM(5, 7, num_layers=2, batch_first=True)"
    assert repr(torch.nn.LSTM(IN, HIDDEN, 2, batch_first=True)) == repr(lstm)


def test_proj_size_is_refused_with_what_to_use():
    with pytest.raises(ConfigError, match=r"proj_size=3: wxb.nn.LSTM has no projections.*"
                                          r"torch.nn.LSTM\(\.\.\., proj_size=\.\.\.\)"):
        wxb.nn.LSTM(IN, HIDDEN, proj_size=3)


def test_a_wrong_initial_state_is_one_clear_error():
    lstm = wxb.nn.LSTM(IN, HIDDEN, 2)
    x = torch.randn(SEQ, BATCH, IN)
    with pytest.raises(ConfigError, match=r"hx must have shape \(2, 3, 7\)"):
        lstm(x, (torch.zeros(1, BATCH, HIDDEN), torch.zeros(1, BATCH, HIDDEN)))
    with pytest.raises(ConfigError, match=r"hx must be a pair \(h_0, c_0\)"):
        lstm(x, torch.zeros(2, BATCH, HIDDEN))
    with pytest.raises(ConfigError, match="expects a 2-D"):
        lstm(torch.randn(1, SEQ, BATCH, IN))
