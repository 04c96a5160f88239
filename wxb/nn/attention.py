"""Scaled dot-product attention, its masks, and the key/value cache used when decoding.

    attention(q, k, v) = softmax(q k^T / sqrt(d) + mask) v

Shapes: q (batch, heads, q_len, head_dim); k, v (batch, kv_heads, k_len, head_dim). With
grouped-query attention (LLaMA-2 70B, LLaMA-3) several query heads share one key/value head:
heads is a multiple of kv_heads.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from wxb.nn.dropout import dropout


class KVCache:
    """Past keys and values of every layer, so each decoding step computes only the new token.

    Each layer's tensors live in a buffer (batch, kv_heads, capacity, head_dim) that doubles
    when full, so appending a step costs one copy of the new token, not of the whole past.
    """

    def __init__(self, num_layers: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.lengths = [0] * num_layers

    def update(self, layer: int, k: torch.Tensor,
               v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append k, v (batch, kv_heads, new, head_dim); return all keys and values so far."""
        start, new = self.lengths[layer], k.shape[2]
        buffer = self.keys[layer]
        if buffer is None or start + new > buffer.shape[2]:
            capacity = max(2 * (start + new), 16)
            self.keys[layer] = _grow(buffer, k, start, capacity)
            self.values[layer] = _grow(self.values[layer], v, start, capacity)
        self.keys[layer][:, :, start:start + new] = k
        self.values[layer][:, :, start:start + new] = v
        self.lengths[layer] = start + new
        return self.keys[layer][:, :, :start + new], self.values[layer][:, :, :start + new]

    def get_seq_length(self, layer: int = 0) -> int:
        return self.lengths[layer]

    def reorder(self, beam_idx: torch.Tensor) -> None:
        """Keep batch rows ``beam_idx`` (beam search moves hypotheses between rows)."""
        for i in range(len(self.keys)):
            if self.keys[i] is not None:
                self.keys[i] = self.keys[i].index_select(0, beam_idx.to(self.keys[i].device))
                self.values[i] = self.values[i].index_select(0, beam_idx.to(self.keys[i].device))

    def crop(self, length: int) -> None:
        """Forget every position from ``length`` on."""
        self.lengths = [min(n, length) for n in self.lengths]


def _grow(old: torch.Tensor | None, like: torch.Tensor, used: int,
          capacity: int) -> torch.Tensor:
    batch, heads, _, dim = like.shape
    fresh = like.new_empty(batch, heads, capacity, dim)
    if old is not None and used:
        fresh[:, :, :used] = old[:, :, :used]
    return fresh


def make_mask(padding_mask: torch.Tensor | None, q_len: int, k_len: int, *,
                   causal: bool = True) -> torch.Tensor | None:
    """A boolean mask (batch or 1, 1, q_len, k_len); True where a query may attend.

    ``padding_mask`` (batch, k_len) has 1 for real tokens and 0 for padding. The queries are
    the last ``q_len`` of the ``k_len`` positions (the earlier ones come from the cache), so query
    i sits at position k_len - q_len + i.

    Returns None when no mask tensor is needed: nothing to mask, or a plain causal square
    (q_len == k_len, no padding), which ``attention(..., is_causal=True)`` does without one.
    """
    if padding_mask is not None and bool(padding_mask.all()):
        padding_mask = None
    if padding_mask is None and (not causal or q_len == 1 or q_len == k_len):
        return None
    mask = torch.ones(1, 1, q_len, k_len, dtype=torch.bool,
                      device=None if padding_mask is None else padding_mask.device)
    if causal:
        mask = torch.tril(mask, diagonal=k_len - q_len)
    if padding_mask is not None:
        mask = mask & padding_mask[:, None, None, :].bool()
        # A query with nothing to attend to (a left-padding position) would give NaN; let it
        # attend everywhere instead: its output is never used, and NaN would spread in training.
        mask = mask | ~mask.any(dim=-1, keepdim=True)
    return mask


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              mask: torch.Tensor | None = None, *, is_causal: bool = False,
              dropout_p: float = 0.0, scale: float | None = None,
              need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attend q over k, v; returns (output (batch, heads, q_len, head_dim), weights or None).

    ``is_causal`` applies the causal square mask when ``mask`` is None (see ``make_mask``).
    The fast path is PyTorch's fused ``scaled_dot_product_attention``; ``need_weights=True``
    takes the explicit path, which also returns the attention weights
    (batch, heads, q_len, k_len) for plotting.
    """
    groups = q.shape[1] // k.shape[1]
    # With dropout on the CPU, the fused kernel falls back to its own unfused path, which draws
    # the dropout mask more slowly than ``dropout`` (wxb/nn/dropout.py): take the explicit one.
    if not need_weights and (dropout_p == 0.0 or q.device.type != "cpu"):
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                             is_causal=is_causal and mask is None, scale=scale,
                                             enable_gqa=groups > 1)
        return out, None
    if groups > 1:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    # Scaling q rather than the scores: the same product, with head_dim rather than k_len
    # multiplications per query.
    scores = (q * (scale if scale is not None else 1 / math.sqrt(q.shape[-1]))) @ k.transpose(
        -2, -1)
    if is_causal and mask is None:
        mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = scores.softmax(dim=-1, dtype=torch.float32).to(q.dtype)
    out = dropout(weights, dropout_p) @ v
    return out, weights if need_weights else None
