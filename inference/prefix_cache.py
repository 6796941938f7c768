"""Keys/values of each task's shared prompt prefix, computed once per adapter and kept.

A SuperNI prompt is mostly its task's definition and demonstrations (about 80% of the tokens for sst2),
identical for every instance; on a CPU, prefill of those tokens dominates. So each row names how many leading
tokens it shares with its task's other prompts (`DecodeRow.prefix_len`, from `shared_prefix`), and their
keys/values are computed once per (adapter slot, prefix tokens) and kept here.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from inference.kv_cache import KVLayers, cache_layers
from inference.multi_lora import MultiLoRA

PrefixKey = tuple[int, tuple[int, ...]]  # (adapter slot, prefix token ids)


class PrefixCache:
    """Keys/values of shared prompt prefixes per (adapter slot, prefix tokens), least recently used dropped first.

    Slots are never reused (MultiLoRA), so an entry can't outlive its adapter's weights; `drop_slot` just frees
    memory early."""

    def __init__(self, max_bytes: int = 512 * 2**20):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[PrefixKey, KVLayers] = OrderedDict()
        self._bytes: dict[PrefixKey, int] = {}
        self.hits = self.misses = 0

    def get(self, key: PrefixKey) -> KVLayers | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        else:
            self.misses += 1
        return entry

    def put(self, key: PrefixKey, layers: KVLayers) -> None:
        self._entries[key] = layers
        self._bytes[key] = sum(t.numel() * t.element_size() for kv in layers for t in kv)
        while sum(self._bytes.values()) > self.max_bytes and len(self._entries) > 1:
            oldest, _ = self._entries.popitem(last=False)
            del self._bytes[oldest]

    def drop_slot(self, slot: int) -> None:
        for key in [k for k in self._entries if k[0] == slot]:
            del self._entries[key], self._bytes[key]


def common_prefix_len(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def prefix_layers(cache: PrefixCache, model, lora: MultiLoRA, ids: list[int], slot: int, device) -> KVLayers:
    """Keys/values of the prefix `ids` under adapter `slot` (one row): from the cache, or computed and kept."""
    key = (slot, tuple(ids))
    layers = cache.get(key)
    if layers is None:
        with lora.rows([slot]):
            out = model(input_ids=torch.tensor([ids], device=device), use_cache=True, logits_to_keep=1)
        layers = cache_layers(out.past_key_values)
        cache.put(key, layers)
    return layers
