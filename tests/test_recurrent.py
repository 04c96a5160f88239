"""The hand-written RNN / LSTM / GRU equal torch.nn.RNN / LSTM / GRU on the same weights:
outputs, final states and gradients, on padded batches, in one or two layers and directions."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from wxb.errors import ConfigError
from wxb.nn.recurrent import Recurrent

TORCH = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
LENGTHS = torch.tensor([6, 3, 1, 5])


def pair(mode: str, layers: int, bidirectional: bool, bias: bool = True):
    torch.manual_seed(0)
    ref = TORCH[mode](5, 7, layers, bias=bias, batch_first=True, bidirectional=bidirectional)
    ours = Recurrent(mode, 5, 7, layers, bias=bias, bidirectional=bidirectional)
    ours.load_state_dict(ref.state_dict())  # same names and shapes, strictly
    return ours, ref


def reference(ref, x, lengths, state=None):
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, final = ref(packed, state)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0], final


def flat(final):
    return list(final) if isinstance(final, tuple) else [final]


@pytest.mark.parametrize("mode, layers, bidirectional",
                         list(itertools.product(TORCH, (1, 2), (False, True))))
def test_outputs_states_and_gradients_equal_torch(mode, layers, bidirectional):
    ours, ref = pair(mode, layers, bidirectional)
    x = torch.randn(4, 6, 5)
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, final = ours(x_ours, LENGTHS)
    out_ref, final_ref = reference(ref, x_ref, LENGTHS)
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(flat(final), flat(final_ref), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    weights = torch.randn_like(out)
    loss = (out * weights).sum() + sum(s.sum() for s in flat(final))
    loss_ref = (out_ref * weights).sum() + sum(s.sum() for s in flat(final_ref))
    loss.backward()
    loss_ref.backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, atol=1e-5, rtol=1e-5)
    ref_params = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, ref_params[name].grad, atol=1e-5, rtol=1e-5,
                                   msg=name)


@pytest.mark.parametrize("mode", TORCH)
def test_torch_impl_runs_the_same_parameters(mode):
    ours, _ = pair(mode, 2, True)
    fused = Recurrent(mode, 5, 7, 2, bidirectional=True, impl="torch")
    fused.load_state_dict(ours.state_dict())
    x = torch.randn(4, 6, 5)
    h0 = torch.randn(4, 4, 7)
    state = (h0, torch.randn(4, 4, 7)) if mode == "lstm" else h0
    out, final = ours(x, LENGTHS, state)
    out_fused, final_fused = fused(x, LENGTHS, state)
    torch.testing.assert_close(out, out_fused, atol=1e-5, rtol=1e-5)
    for a, b in zip(flat(final), flat(final_fused), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert set(fused.state_dict()) == set(ours.state_dict())
    out_fused.sum().backward()  # the fused kernel trains the module's own parameters
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in fused.parameters())


@pytest.mark.parametrize("mode", TORCH)
def test_padding_changes_nothing(mode):
    """A sequence alone and the same sequence padded in a batch give the same outputs and
    final states (the backward direction starts at its true end)."""
    ours, _ = pair(mode, 2, True)
    x = torch.randn(2, 6, 5)
    alone, final_alone = ours(x[1:, :3])
    batched, final = ours(x, torch.tensor([6, 3]))
    torch.testing.assert_close(batched[1:, :3], alone, atol=1e-6, rtol=1e-6)
    assert batched[1, 3:].abs().max() == 0
    for a, b in zip(flat(final), flat(final_alone), strict=True):
        torch.testing.assert_close(a[:, 1:], b, atol=1e-6, rtol=1e-6)


def test_no_bias_and_dropout_between_layers():
    ours, ref = pair("lstm", 2, False, bias=False)
    x = torch.randn(4, 6, 5)
    torch.testing.assert_close(ours(x, LENGTHS)[0], reference(ref, x, LENGTHS)[0],
                               atol=1e-5, rtol=1e-5)
    dropped = Recurrent("gru", 5, 7, 2, dropout=0.5)
    dropped.load_state_dict(Recurrent("gru", 5, 7, 2).state_dict())
    assert not torch.equal(dropped.train()(x)[0], dropped.eval()(x)[0])
    torch.testing.assert_close(dropped.eval()(x)[0], dropped.eval()(x)[0])


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="unknown recurrent mode 'lstn'"):
        Recurrent("lstn", 5, 7)
    with pytest.raises(ConfigError, match="unknown impl"):
        Recurrent("lstm", 5, 7, impl="cudnn")
    with pytest.raises(ConfigError, match="lengths must be between 1 and the sequence length"):
        Recurrent("gru", 5, 7)(torch.randn(2, 3, 5), torch.tensor([3, 0]))
