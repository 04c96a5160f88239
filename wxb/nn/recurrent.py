"""Recurrent layers written out from their equations: RNN (tanh), LSTM and GRU.

One step of each, for input x_t and previous state h (and cell c), in PyTorch's gate order:

    RNN    h' = tanh(W_ih x + b_ih + W_hh h + b_hh)            (or relu, ``nonlinearity="relu"``)
    LSTM   i, f, g, o = W_ih x + b_ih + W_hh h + b_hh          (four blocks of hidden_size)
           c' = sigmoid(f) * c + sigmoid(i) * tanh(g);  h' = sigmoid(o) * tanh(c')
    GRU    r, z, n_x = W_ih x + b_ih;  r_h, z_h, n_h = W_hh h + b_hh
           r = sigmoid(r + r_h);  z = sigmoid(z + z_h);  n = tanh(n_x + r * n_h)
           h' = (1 - z) * n + z * h

``Recurrent`` stacks layers (the output of one is the input of the next, with dropout between
them in training), optionally bidirectional, over padded batches: given each sequence's length,
a padded step leaves the state unchanged and outputs zeros, and the backward direction starts at
each sequence's true end. The parameters have ``torch.nn.LSTM``'s names and shapes
(``weight_ih_l0``, ``weight_hh_l0_reverse``, ...), so a state dict moves between the two, and
``impl="torch"`` runs the same parameters through PyTorch's fused kernels. ``wxb.nn.rnn`` wraps
this class in ``torch.nn.RNN/LSTM/GRU``'s own calling convention.

The input projections W_ih x of all time steps are one matrix product before the loop; the loop
does only the W_hh h product and the gates.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from wxb.errors import ConfigError
from wxb.nn.dropout import dropout

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
IMPLS = ("wxb", "torch")
NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def rnn_cell(xw: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor,
             b_hh: torch.Tensor | None, nonlinearity: str = "tanh") -> torch.Tensor:
    """One Elman-RNN step (tanh or relu); ``xw`` is W_ih x + b_ih, already computed."""
    return NONLINEARITIES[nonlinearity](xw + _linear(h, w_hh, b_hh))


def lstm_cell(xw: torch.Tensor, h: torch.Tensor, c: torch.Tensor, w_hh: torch.Tensor,
              b_hh: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step; returns (h', c')."""
    i, f, g, o = (xw + _linear(h, w_hh, b_hh)).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_cell(xw: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor,
             b_hh: torch.Tensor | None) -> torch.Tensor:
    """One GRU step: the reset gate scales the hidden part of the candidate only."""
    r_x, z_x, n_x = xw.chunk(3, dim=-1)
    r_h, z_h, n_h = _linear(h, w_hh, b_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(r_x + r_h), torch.sigmoid(z_x + z_h)
    n = torch.tanh(n_x + r * n_h)
    return n + z * (h - n)  # = (1 - z) * n + z * h


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return torch.addmm(b, x, w.t()) if b is not None else x @ w.t()


class Recurrent(nn.Module):
    """A stack of RNN / LSTM / GRU layers over (batch, seq, input_size) inputs.

    ``forward(x, lengths=None, state=None)`` returns (output, final state): output is (batch,
    seq, directions * hidden_size), zero at padded positions; the final state is h_n (LSTM:
    (h_n, c_n)), each (num_layers * directions, batch, hidden_size), taken at each sequence's
    last real step, as ``torch.nn.LSTM`` gives them for a packed sequence.
    """

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, *,
                 bias: bool = True, bidirectional: bool = False, dropout: float = 0.0,
                 impl: str = "wxb", nonlinearity: str = "tanh",
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if mode not in GATES:
            raise ConfigError(f"unknown recurrent mode {mode!r}; choose one of: "
                              f"{', '.join(GATES)}")
        if impl not in IMPLS:
            raise ConfigError(f"unknown impl {impl!r}; choose one of: {', '.join(IMPLS)}")
        if num_layers < 1 or hidden_size < 1 or input_size < 1:
            raise ConfigError("input_size, hidden_size and num_layers must be at least 1")
        if not 0 <= dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        if nonlinearity not in NONLINEARITIES or (mode != "rnn" and nonlinearity != "tanh"):
            raise ConfigError(f"unknown nonlinearity {nonlinearity!r} for {mode}; the rnn mode "
                              f"takes one of: {', '.join(NONLINEARITIES)}, the others tanh")
        self.mode, self.impl, self.nonlinearity = mode, impl, nonlinearity
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.bidirectional, self.dropout = bias, bidirectional, dropout
        directions = 2 if bidirectional else 1
        width = GATES[mode] * hidden_size
        factory = {"device": device, "dtype": dtype}
        for layer in range(num_layers):
            inputs = input_size if layer == 0 else hidden_size * directions
            for suffix in self._suffixes(layer):
                self.register_parameter(f"weight_ih{suffix}",
                                        nn.Parameter(torch.empty(width, inputs, **factory)))
                self.register_parameter(f"weight_hh{suffix}",
                                        nn.Parameter(torch.empty(width, hidden_size, **factory)))
                if bias:
                    for name in (f"bias_ih{suffix}", f"bias_hh{suffix}"):
                        self.register_parameter(name, nn.Parameter(torch.empty(width, **factory)))
        self.reset_parameters()

    def _suffixes(self, layer: int) -> list[str]:
        return [f"_l{layer}"] + ([f"_l{layer}_reverse"] if self.bidirectional else [])

    def reset_parameters(self) -> None:
        """U(-1/sqrt(hidden), 1/sqrt(hidden)) for every weight and bias, as PyTorch does."""
        bound = 1 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
                state: State | None = None) -> tuple[torch.Tensor, State]:
        """x (batch, seq, input_size); lengths (batch,) of the real steps (default: all);
        state: initial h_0 (LSTM: (h_0, c_0)), each (num_layers * directions, batch, hidden)."""
        batch, seq, _ = x.shape
        if lengths is None:
            lengths = torch.full((batch,), seq, dtype=torch.long)
        lengths = lengths.to("cpu", torch.long)
        if bool((lengths < 1).any()) or bool((lengths > seq).any()):
            raise ConfigError(f"lengths must be between 1 and the sequence length {seq}, "
                              f"got {lengths.tolist()}")
        directions = 2 if self.bidirectional else 1
        shape = (self.num_layers * directions, batch, self.hidden_size)
        if state is None:
            h0 = x.new_zeros(shape)
            state = (h0, h0.clone()) if self.mode == "lstm" else h0
        if self.impl == "torch":
            return self._forward_torch(x, lengths, state)
        return self._forward_wxb(x, lengths, state)

    def _forward_wxb(self, x: torch.Tensor, lengths: torch.Tensor,
                     state: State) -> tuple[torch.Tensor, State]:
        h0, c0 = state if self.mode == "lstm" else (state, None)
        # valid[t] (batch, 1): whether step t is a real step of each sequence.
        valid = (torch.arange(x.shape[1])[:, None] < lengths[None, :]).to(x.device)[..., None]
        finals_h, finals_c = [], []
        for layer in range(self.num_layers):
            outputs = []
            for direction, suffix in enumerate(self._suffixes(layer)):
                k = layer * (2 if self.bidirectional else 1) + direction
                out, h, c = self._run_direction(
                    x, valid, suffix, reverse=direction == 1, h=h0[k],
                    c=c0[k] if c0 is not None else None)
                outputs.append(out)
                finals_h.append(h)
                finals_c.append(c)
            x = torch.cat(outputs, dim=-1) if len(outputs) > 1 else outputs[0]
            if layer < self.num_layers - 1:
                x = dropout(x, self.dropout, self.training)
        h_n = torch.stack(finals_h)
        return x, (h_n, torch.stack(finals_c)) if self.mode == "lstm" else h_n

    def _run_direction(self, x: torch.Tensor, valid: torch.Tensor, suffix: str, *,
                       reverse: bool, h: torch.Tensor, c: torch.Tensor | None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One layer in one direction: the hoisted input projection, then the step loop. A
        padded step keeps the state and outputs zeros."""
        w_hh = getattr(self, f"weight_hh{suffix}")
        b_hh = getattr(self, f"bias_hh{suffix}") if self.bias else None
        xw = _linear(x.reshape(-1, x.shape[-1]), getattr(self, f"weight_ih{suffix}"),
                     getattr(self, f"bias_ih{suffix}") if self.bias else None)
        # unbind, not xw[:, t]: its backward stacks the step gradients once, where indexing
        # would add a full-size zero tensor per step.
        xw = xw.view(x.shape[0], x.shape[1], -1).unbind(1)
        steps = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
        padded = not bool(valid.all())  # without padding, no step needs the masks
        outputs: list[torch.Tensor] = [x.new_empty(0)] * x.shape[1]
        for t in steps:
            new_h, new_c = self._cell(xw[t], h, c, w_hh, b_hh)
            if c is not None:
                c = torch.where(valid[t], new_c, c) if padded else new_c
            h = torch.where(valid[t], new_h, h) if padded else new_h
            outputs[t] = new_h * valid[t] if padded else new_h
        return torch.stack(outputs, dim=1), h, c

    def _cell(self, xw: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None,
              w_hh: torch.Tensor, b_hh: torch.Tensor | None
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One step of this layer's kind: (h', c'), c' None but for the LSTM."""
        if self.mode == "lstm":
            return lstm_cell(xw, h, c, w_hh, b_hh)
        if self.mode == "gru":
            return gru_cell(xw, h, w_hh, b_hh), None
        return rnn_cell(xw, h, w_hh, b_hh, self.nonlinearity), None

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One time step through every layer, for decoders that choose their next input as
        they go: x (batch, input_size), state h (LSTM: (h, c)), each (num_layers, batch,
        hidden). Returns the top layer's output (batch, hidden) and the new state. The same
        parameters and equations as ``forward``; unidirectional stacks only."""
        if self.bidirectional:
            raise ConfigError("step() runs a unidirectional stack; a bidirectional layer "
                              "needs the whole sequence")
        h_all, c_all = state if self.mode == "lstm" else (state, None)
        new_h, new_c = [], []
        for layer in range(self.num_layers):
            if layer:
                x = dropout(x, self.dropout, self.training)
            suffix = f"_l{layer}"
            xw = _linear(x, getattr(self, f"weight_ih{suffix}"),
                         getattr(self, f"bias_ih{suffix}") if self.bias else None)
            h, c = self._cell(xw, h_all[layer], None if c_all is None else c_all[layer],
                              getattr(self, f"weight_hh{suffix}"),
                              getattr(self, f"bias_hh{suffix}") if self.bias else None)
            new_h.append(h)
            new_c.append(c)
            x = h
        h_n = torch.stack(new_h)
        return x, (h_n, torch.stack(new_c)) if self.mode == "lstm" else h_n

    def _forward_torch(self, x: torch.Tensor, lengths: torch.Tensor,
                       state: State) -> tuple[torch.Tensor, State]:
        """The same parameters through ``torch.nn.RNN/LSTM/GRU`` on a packed sequence."""
        from torch.func import functional_call
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        module = self._torch_module()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, final = functional_call(module, dict(self.named_parameters()), (packed, state))
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out, final

    def _torch_module(self) -> nn.RNNBase:
        """A PyTorch layer of the same shape (its own weights unused), kept outside the
        state dict and made once."""
        cached = self.__dict__.get("_torch")
        if cached is None or cached.training != self.training:
            cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[self.mode]
            extra = {"nonlinearity": self.nonlinearity} if self.mode == "rnn" else {}
            cached = cls(self.input_size, self.hidden_size, self.num_layers, bias=self.bias,
                         batch_first=True, dropout=self.dropout,
                         bidirectional=self.bidirectional, **extra).train(self.training)
            self.__dict__["_torch"] = cached
        return cached.to(next(self.parameters()).device)
