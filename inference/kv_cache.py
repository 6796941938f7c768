"""Keys/values of a running batch: cache layers that grow in place, and the per-row state that indexes them.

Built on transformers' cache internals (`DynamicCache.layers`, `DynamicLayer`); `prefill.merge` reads the
layers too. A transformers upgrade that changes them is fixed in those two places.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

if TYPE_CHECKING:
    from inference.decoder import DecodeRow

# Per layer, (keys, values) of shape [rows, heads, positions, head dim].
KVLayers = list[tuple[torch.Tensor, torch.Tensor]]


class GrowingLayer(DynamicLayer):
    """A cache layer with room to grow: a new token is written in place, not appended by copying the cache
    (transformers' DynamicLayer concatenates every step, which copies every row's keys and values)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int):
        """`keys`/`values` are the buffers [rows, heads, capacity, dim]; the first `length` positions are filled."""
        super().__init__()
        self._keys, self._values, self.length = keys, values, length
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self._views()

    @classmethod
    def copy_of(cls, keys: torch.Tensor, values: torch.Tensor, room: int) -> GrowingLayer:
        n = keys.shape[2]
        buffers = [t.new_empty((*t.shape[:2], n + room, t.shape[3])) for t in (keys, values)]
        buffers[0][:, :, :n], buffers[1][:, :, :n] = keys, values
        return cls(*buffers, n)

    def _views(self) -> None:
        self.keys, self.values = self._keys[:, :, : self.length], self._values[:, :, : self.length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        new = key_states.shape[2]
        if self.length + new > self._keys.shape[2]:  # out of room: double it
            grow = lambda t: torch.cat([t, t.new_empty((*t.shape[:2], t.shape[2] + new, t.shape[3]))], dim=2)  # noqa: E731
            self._keys, self._values = grow(self._keys), grow(self._values)
        self._keys[:, :, self.length : self.length + new] = key_states
        self._values[:, :, self.length : self.length + new] = value_states
        self.length += new
        self._views()
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._keys, self._values = self._keys[indices], self._values[indices]
        self._views()

    def drop_left(self, n: int) -> None:
        """Forget the first `n` positions (masked for every row); the next merge or growth frees their memory."""
        self._keys, self._values, self.length = self._keys[:, :, n:], self._values[:, :, n:], self.length - n
        self._views()


def growing_cache(layers: KVLayers, room: int) -> DynamicCache:
    """A cache over these keys/values, copied into buffers with `room` more positions (none: no copy)."""
    cache = DynamicCache()
    cache.layers = [GrowingLayer.copy_of(k, v, room) if room else GrowingLayer(k, v, k.shape[2]) for k, v in layers]
    return cache


def cache_of(layers: list[GrowingLayer]) -> DynamicCache:
    """A cache made of layers already built (a merge writes them straight into their buffers)."""
    cache = DynamicCache()
    cache.layers = layers
    return cache


def cache_layers(cache: DynamicCache) -> KVLayers:
    """The keys/values a forward pass left in `cache`, per layer."""
    return [(layer.keys, layer.values) for layer in cache.layers]


@dataclass
class RunningBatch:
    """Rows being decoded together, grouped by adapter, and everything needed for their next step."""

    keys: list  # the caller's name for each row
    rows: list[DecodeRow]
    slots: list[int]  # adapter slot per row
    outputs: list[list[int]]  # tokens generated so far per row
    cache: DynamicCache
    mask: torch.Tensor  # [rows, cached length]: 1 over each row's real tokens
    positions: torch.Tensor  # [rows]: position id of each row's last token
    logits: torch.Tensor  # [rows, vocab]: next-token logits

    def __len__(self) -> int:
        return len(self.rows)

    def select(self, keep: list[int], device) -> None:
        index = torch.tensor(keep, device=device)
        self.cache.batch_select_indices(index)
        self.mask, self.positions, self.logits = self.mask[index], self.positions[index], self.logits[index]
        self.keys, self.rows, self.slots, self.outputs = (
            [xs[k] for k in keep] for xs in (self.keys, self.rows, self.slots, self.outputs)
        )
        # Columns only rows that left were using: drop them, or a batch that never drains grows without bound.
        unused = int(self.mask.any(0).int().argmax())
        if unused:
            self.mask = self.mask[:, unused:]
            for layer in self.cache.layers:
                layer.drop_left(unused)
