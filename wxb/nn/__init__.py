"""Building blocks shared by every model: attention, positions, norms, feed-forward layers,
recurrent layers (and ``LSTM``/``GRU``/``RNN``, drop-ins for torch.nn's)."""

from wxb.nn.attention import KVCache, attention, make_mask
from wxb.nn.dropout import Dropout, dropout
from wxb.nn.feedforward import SwiGLU, activation
from wxb.nn.norm import RMSNorm
from wxb.nn.position import (
    RotaryEmbedding,
    apply_rotary,
    relative_position_bucket,
    sinusoidal_positions,
)
from wxb.nn.recurrent import Recurrent
from wxb.nn.rnn import GRU, LSTM, RNN

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Dropout",
    "KVCache",
    "RMSNorm",
    "Recurrent",
    "RotaryEmbedding",
    "SwiGLU",
    "activation",
    "apply_rotary",
    "attention",
    "dropout",
    "make_mask",
    "relative_position_bucket",
    "sinusoidal_positions",
]
