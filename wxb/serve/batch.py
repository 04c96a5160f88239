"""The engine's batch: one left-padded KV cache for every active row.

Each layer keeps one (rows, kv_heads, T, head_dim) tensor of keys and one of values, each row's
positions right-aligned, and ``mask`` (rows, T) marks the padding on the left with 0. Rows that
join with longer prompts pad the batch on the left; shorter ones are padded themselves; when
rows leave, the columns that are padding in every remaining row are cut, so T is always the
longest row's length. Masked keys get exactly zero attention weight, so a row's numbers do not
depend on its neighbours.
"""

from __future__ import annotations

import torch

from wxb.nn.attention import KVCache


class BatchCache:
    """``add`` prefilled rows, extend the mask by one column a decoding step (``step``),
    ``keep`` the rows that go on."""

    def __init__(self) -> None:
        self.cache: KVCache | None = None
        self.mask: torch.Tensor | None = None

    def add(self, cache: KVCache, mask: torch.Tensor) -> None:
        """Rows prefilled together: their cache and padding mask (rows, length)."""
        cache = _exact(cache)
        if self.cache is None:
            self.cache, self.mask = cache, mask
            return
        total, length = self.cache.get_seq_length(), cache.get_seq_length()
        width = max(total, length)
        merged = KVCache(len(cache.keys))
        for layer in range(len(cache.keys)):
            old_k, old_v = _left_pad(self.cache, layer, width)
            new_k, new_v = _left_pad(cache, layer, width)
            merged.keys[layer] = torch.cat([old_k, new_k])
            merged.values[layer] = torch.cat([old_v, new_v])
            merged.lengths[layer] = width
        self.mask = torch.cat([torch.nn.functional.pad(self.mask, (width - total, 0)),
                               torch.nn.functional.pad(mask, (width - length, 0))])
        self.cache = merged

    def step(self) -> torch.Tensor:
        """The mask of a decoding step: one more real position for every row."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(self.mask), 1)], dim=1)
        return self.mask

    def keep(self, rows: list[int]) -> None:
        """Keep ``rows`` (in this order) and cut the columns none of them uses."""
        if not rows:
            self.cache, self.mask = None, None
            return
        index = torch.tensor(rows, device=self.mask.device)
        self.cache.reorder(index)
        self.mask = self.mask.index_select(0, index)
        start = int(self.mask.any(dim=0).long().argmax())  # the first column someone uses
        if start:
            length = self.cache.get_seq_length()
            for layer in range(len(self.cache.keys)):
                self.cache.keys[layer] = self.cache.keys[layer][:, :, start:length]
                self.cache.values[layer] = self.cache.values[layer][:, :, start:length]
                self.cache.lengths[layer] = length - start
            self.mask = self.mask[:, start:]


def _exact(cache: KVCache) -> KVCache:
    """``cache`` with its buffers cut to the positions in use."""
    for layer in range(len(cache.keys)):
        n = cache.lengths[layer]
        cache.keys[layer] = cache.keys[layer][:, :, :n]
        cache.values[layer] = cache.values[layer][:, :, :n]
    return cache


def _left_pad(cache: KVCache, layer: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's keys and values (rows, heads, width, dim), zeros on the left."""
    n = cache.lengths[layer]
    k, v = cache.keys[layer][:, :, :n], cache.values[layer][:, :, :n]
    if n == width:
        return k, v
    pad = (0, 0, width - n, 0)
    return torch.nn.functional.pad(k, pad), torch.nn.functional.pad(v, pad)
