"""``torch.nn.RNN``, ``LSTM`` and ``GRU``, as drop-ins running wxb's hand-written cells.

The same constructor arguments and defaults, the same ``forward(input, hx=None)`` (time-major
by default, ``batch_first=True``, unbatched ``(seq, input_size)``, or a ``PackedSequence``), the
same outputs and the same parameter names, so ``load_state_dict`` moves weights between a torch
layer and its wxb twin in either direction::

    lstm = wxb.nn.LSTM(10, 20, num_layers=2, bidirectional=True)
    lstm.load_state_dict(torch.nn.LSTM(10, 20, num_layers=2, bidirectional=True).state_dict())
    output, (h_n, c_n) = lstm(x)      # x (seq, batch, 10) -> output (seq, batch, 40)

The equations, the stacking and the masking of padded steps are ``wxb.nn.recurrent.Recurrent``'s;
this module only translates PyTorch's calling convention to it. LSTM with projections
(``proj_size > 0``) is not written out here and is refused.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from wxb.errors import ConfigError
from wxb.nn.recurrent import Recurrent, State

Device = torch.device | str | None


class RNNBase(Recurrent):
    """What the three drop-ins share: torch's argument names and ``forward(input, hx)``.

    ``forward(input, hx=None) -> (output, h_n)`` (LSTM: ``(output, (h_n, c_n))``) where, with
    D = 2 if bidirectional else 1 and H = hidden_size:

    - input: (seq, batch, input_size); (batch, seq, input_size) with ``batch_first``;
      (seq, input_size) unbatched; or a ``PackedSequence`` of variable-length sequences.
    - hx: h_0 (LSTM: the pair (h_0, c_0)), each (D * num_layers, batch, H), or
      (D * num_layers, H) for an unbatched input; zeros when None.
    - output: the top layer's h at every step, (seq, batch, D * H) (batch first with
      ``batch_first``; (seq, D * H) unbatched; a ``PackedSequence`` for one).
    - h_n (and c_n): the last state of every layer and direction, shaped like hx.
    """

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int,
                 bias: bool, batch_first: bool, dropout: float, bidirectional: bool, *,
                 proj_size: int = 0, nonlinearity: str = "tanh", device: Device = None,
                 dtype: torch.dtype | None = None) -> None:
        if proj_size != 0:
            raise ConfigError(f"proj_size={proj_size}: wxb.nn.LSTM has no projections (LSTMP); "
                              "use torch.nn.LSTM(..., proj_size=...) for them, or leave "
                              "proj_size at 0")
        super().__init__(mode, input_size, hidden_size, num_layers, bias=bias,
                         bidirectional=bidirectional, dropout=dropout,
                         nonlinearity=nonlinearity, device=device, dtype=dtype)
        self.batch_first = batch_first
        self.proj_size = 0

    def extra_repr(self) -> str:
        """The arguments that differ from the defaults, as torch prints them."""
        s = f"{self.input_size}, {self.hidden_size}"
        defaults = {"num_layers": 1, "bias": True, "batch_first": False, "dropout": 0.0,
                    "bidirectional": False}
        if self.mode == "rnn":
            defaults["nonlinearity"] = "tanh"
        changed = [f"{k}={getattr(self, k)!r}" for k, v in defaults.items()
                   if getattr(self, k) != v]
        return ", ".join([s, *changed])

    def forward(self, input: torch.Tensor | PackedSequence, hx: State | None = None
                ) -> tuple[torch.Tensor | PackedSequence, State]:
        """See the class docstring for the shapes."""
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx)
        if input.dim() not in (2, 3):
            raise ConfigError(f"{type(self).__name__} expects a 2-D (seq, input_size) or 3-D "
                              f"input, got {input.dim()}-D of shape {tuple(input.shape)}")
        batched = input.dim() == 3
        if batched:
            # Recurrent runs batch first; time-major input is a transposed view of it.
            x = input if self.batch_first else input.transpose(0, 1)
        else:
            x = input.unsqueeze(0)
            self._check_state(hx, None)
            hx = _map(hx, lambda t: t.unsqueeze(1))
        self._check_state(hx, x.shape[0])
        output, state = super().forward(x, state=hx)
        if not batched:
            return output.squeeze(0), _map(state, lambda t: t.squeeze(1))
        # contiguous: torch's time-major output can be .view()-ed, and callers do.
        return (output if self.batch_first else output.transpose(0, 1).contiguous()), state

    def _forward_packed(self, packed: PackedSequence, hx: State | None
                        ) -> tuple[PackedSequence, State]:
        """A packed batch runs padded with its lengths; hx and h_n are in the batch's own
        order (as torch has them), and the output is packed exactly like the input."""
        padded, lengths = pad_packed_sequence(packed, batch_first=True)
        self._check_state(hx, padded.shape[0])
        output, state = super().forward(padded, lengths, hx)
        if packed.sorted_indices is not None:  # pack in the input's longest-first order
            output = output[packed.sorted_indices.to(output.device)]
            lengths = lengths[packed.sorted_indices.cpu()]
        data = pack_padded_sequence(output, lengths, batch_first=True).data
        return PackedSequence(data, packed.batch_sizes, packed.sorted_indices,
                              packed.unsorted_indices), state

    def _check_state(self, hx: State | None, batch: int | None) -> None:
        """hx must be a tensor (LSTM: a pair) of (D * num_layers, batch, hidden_size); with
        ``batch`` None, the unbatched (D * num_layers, hidden_size)."""
        if hx is None:
            return
        lstm = self.mode == "lstm"
        if lstm != isinstance(hx, tuple) or (lstm and len(hx) != 2):
            raise ConfigError(f"{type(self).__name__} hx must be "
                              f"{'a pair (h_0, c_0)' if lstm else 'one tensor h_0'}")
        layers = self.num_layers * (2 if self.bidirectional else 1)
        shape = (layers, self.hidden_size) if batch is None else (layers, batch,
                                                                  self.hidden_size)
        for t in hx if lstm else (hx,):
            if tuple(t.shape) != shape:
                raise ConfigError(f"{type(self).__name__} hx must have shape {shape} "
                                  "(num_layers * directions, batch, hidden_size), got "
                                  f"{tuple(t.shape)}")


def _map(state: State | None, fn: Callable[[torch.Tensor], torch.Tensor]) -> State | None:
    if state is None:
        return None
    return tuple(fn(t) for t in state) if isinstance(state, tuple) else fn(state)


class LSTM(RNNBase):
    """``torch.nn.LSTM`` (gates i, f, g, o) on ``wxb.nn.recurrent.lstm_cell``; returns
    ``(output, (h_n, c_n))``. ``proj_size`` other than 0 raises ``ConfigError``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device: Device = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size=proj_size, device=device,
                         dtype=dtype)


class GRU(RNNBase):
    """``torch.nn.GRU`` (gates r, z, n) on ``wxb.nn.recurrent.gru_cell``; returns
    ``(output, h_n)``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device: Device = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, device=device, dtype=dtype)


class RNN(RNNBase):
    """``torch.nn.RNN``: the Elman RNN, h' = tanh or relu(W_ih x + b_ih + W_hh h + b_hh), on
    ``wxb.nn.recurrent.rnn_cell``; returns ``(output, h_n)``. As in torch, the fourth
    positional argument is ``nonlinearity``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device: Device = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__("rnn", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, nonlinearity=nonlinearity, device=device,
                         dtype=dtype)
