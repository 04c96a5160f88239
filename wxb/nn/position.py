"""Positions: sinusoidal (Vaswani et al., 2017), rotary (Su et al., 2021; LLaMA-3 scaling) and
T5's relative position buckets (Raffel et al., 2020).

Learned positions need no code of their own: they are an ``nn.Embedding`` over position ids.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from wxb.errors import ConfigError


def sinusoidal_positions(num_positions: int, dim: int, *, interleave: bool = True) -> torch.Tensor:
    """(num_positions, dim): sin(pos / 10000^(2i/dim)) and cos of the same angle, i < dim / 2.

    ``interleave`` puts them on even and odd dimensions (the paper's formula); False puts every
    sin in the first half and every cos in the second, as tensor2tensor, fairseq and Marian do
    (the same information in another order; a checkpoint is trained with one of them).
    """
    position = torch.arange(num_positions, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(num_positions, dim)
    if interleave:
        table[:, 0::2] = torch.sin(position * div)
        table[:, 1::2] = torch.cos(position * div[: dim // 2])
    else:
        half = (dim + 1) // 2
        table[:, :half] = torch.sin(position * div)
        table[:, half:] = torch.cos(position * div[: dim // 2])
    return table


def rope_frequencies(head_dim: int, theta: float, scaling: dict | None = None) -> torch.Tensor:
    """The rotary inverse frequencies theta^(-2i/d), i < d/2, with optional context scaling.

    ``scaling`` is a Hugging Face ``rope_scaling`` dict: ``{"rope_type": "linear", "factor": f}``
    divides every frequency by f; ``"llama3"`` divides only the low frequencies (wavelengths
    longer than ``original_max_position_embeddings / low_freq_factor``), keeps the high ones and
    blends in between, so short-range attention is unchanged while the context stretches.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float()
                                / head_dim))
    kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if kind == "default":
        return inv_freq
    factor = float(scaling["factor"])
    if kind == "linear":
        return inv_freq / factor
    if kind != "llama3":
        raise ConfigError(f"rope_scaling type {kind!r} is not supported; use default, linear "
                          "or llama3")
    low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
    old_context = float(scaling["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_context / low, inv_freq / factor, inv_freq)
    smooth = (old_context / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old_context / high) * ~(wavelen > old_context / low)
    return torch.where(medium, blended, scaled)


class RotaryEmbedding(nn.Module):
    """cos/sin tables of rotary positions for given position ids.

    forward(position_ids (batch, seq), dtype) -> cos, sin of shape (batch, seq, head_dim).
    """

    def __init__(self, head_dim: int, theta: float = 10000.0, scaling: dict | None = None) -> None:
        super().__init__()
        self.register_buffer("inv_freq", rope_frequencies(head_dim, theta, scaling),
                             persistent=False)

    def forward(self, position_ids: torch.Tensor,
                dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        # Angles in float32: bfloat16 positions past 256 would already be rounded.
        freqs = position_ids[..., None].float() * self.inv_freq.float()
        angles = torch.cat((freqs, freqs), dim=-1)
        return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
                 sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate q, k of shape (batch, heads, seq, head_dim) by the angles of cos/sin.

    Dimension i is paired with i + head_dim/2 (the "rotate half" layout of GPT-NeoX and the
    Hugging Face LLaMA weights), not with its neighbour as in the paper.
    """
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def relative_position_bucket(relative_position: torch.Tensor, bidirectional: bool = True,
                             num_buckets: int = 32, max_distance: int = 128) -> torch.Tensor:
    """The bucket (0 .. num_buckets - 1) of each distance key - query.

    Bidirectional: half the buckets for keys after the query, half for those before; one way
    (the decoder): future keys fall in bucket 0 with the query itself. Of a direction's
    buckets, the first half are exact distances 0, 1, ...; the rest cover distances up to
    ``max_distance`` logarithmically, and everything farther shares the last one.
    """
    bucket = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        bucket = bucket + (relative_position > 0).long() * num_buckets
        distance = relative_position.abs()
    else:
        distance = -torch.clamp(relative_position, max=0)
    exact = num_buckets // 2
    # log(distance / exact) / log(max_distance / exact) of the remaining buckets (distance 0
    # gives -inf here, which the `where` below never picks).
    large = exact + (torch.log(distance.float() / exact) / math.log(max_distance / exact)
                     * (num_buckets - exact)).long()
    large = torch.clamp(large, max=num_buckets - 1)
    return bucket + torch.where(distance < exact, distance, large)
