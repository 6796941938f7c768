"""Prefill: planning the passes for new rows, running one pass on top of cached prefixes, merging batches.

A batch prefills only the instance tokens, on top of the cached prefixes (`prefix_cache`):

    row i:  [pad .. | prefix_i (cached) | pad .. | suffix_i]   attention mask 0 over the pads
            position ids count only real tokens, so every row sees exactly its own prompt.

New rows are prefilled in passes of similar uncached length (`prefill_groups`): padding a short instance to
the longest one costs real work on a CPU. The passes and the running batch then become one batch (`merge`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from transformers import DynamicCache

from inference.kv_cache import GrowingLayer, KVLayers, RunningBatch, cache_layers, cache_of, growing_cache
from inference.multi_lora import MultiLoRA

if TYPE_CHECKING:
    from inference.decoder import DecodeRow


def prefill_groups(lengths: list[int], call_tokens: int) -> list[list[int]]:
    """Split rows (by index) into prefill passes so that padding plus per-pass cost is least.

    A pass over rows padded to its longest costs `rows * longest` token-forwards, plus a fixed `call_tokens`
    (every pass streams all the weights once, however few tokens it carries). Sorted by length, the best
    split into contiguous runs is a small dynamic program."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    sizes = [lengths[i] for i in order]
    best = [0.0] + [float("inf")] * len(sizes)  # best[j]: least cost of the first j rows
    cut = [0] * (len(sizes) + 1)
    for j in range(1, len(sizes) + 1):
        for i in range(j):  # rows i..j-1 in one pass, padded to sizes[j-1]
            cost = best[i] + call_tokens + (j - i) * sizes[j - 1]
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], len(sizes)
    while j > 0:
        groups.append(order[cut[j] : j])
        j = cut[j]
    return groups[::-1]


def prefill(
    model,
    lora: MultiLoRA,
    rows: list[DecodeRow],
    keys: list,
    cached: list[int],
    prefix_kv: Callable[[list[int], int], KVLayers],
    pad_id: int,
    device,
    room: bool = True,
) -> RunningBatch:
    """Run the uncached part of each prompt; rows come grouped by adapter. `cached[i]` leading tokens of row i
    come from `prefix_kv(ids, slot)`. With `room`, the cache gets space for every new token now (a batch about
    to be merged is copied anyway: no room, no copy)."""
    n = len(rows)
    slots = [lora.slot(r.adapter) for r in rows]
    prefix = cached  # leading tokens per row whose keys/values come from prefix_kv
    suffix = [len(r.prompt_ids) - p for r, p in zip(rows, prefix)]
    width_p, width_s = max(prefix), max(suffix)
    input_ids = torch.full((n, width_s), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width_p + width_s), dtype=torch.long)
    positions = torch.zeros((n, width_s), dtype=torch.long)
    for i, (r, p, s) in enumerate(zip(rows, prefix, suffix)):
        input_ids[i, width_s - s :] = torch.tensor(r.prompt_ids[p:])
        mask[i, width_p - p : width_p] = 1
        mask[i, width_p + width_s - s :] = 1
        positions[i, width_s - s :] = torch.arange(p, p + s)
    cache = DynamicCache()
    if width_p:
        per_row = [prefix_kv(r.prompt_ids[:p], slot) if p else None for r, p, slot in zip(rows, prefix, slots)]
        template = next(layers for layers in per_row if layers is not None)
        kv = []
        for layer, (k0, v0) in enumerate(template):
            keys_ = k0.new_zeros((n, k0.shape[1], width_p, k0.shape[3]))
            values = v0.new_zeros((n, v0.shape[1], width_p, v0.shape[3]))
            for i, (layers, p) in enumerate(zip(per_row, prefix)):
                if layers is not None:
                    keys_[i, :, width_p - p :] = layers[layer][0][0]
                    values[i, :, width_p - p :] = layers[layer][1][0]
            kv.append((keys_, values))
        cache = DynamicCache(ddp_cache_data=kv)
    input_ids, mask, positions = input_ids.to(device), mask.to(device), positions.to(device)
    with lora.rows(slots):
        out = model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
    cache = growing_cache(cache_layers(out.past_key_values), max(r.max_new_tokens for r in rows) if room else 0)
    return RunningBatch(
        list(keys), list(rows), slots, [[] for _ in rows], cache, mask, positions[:, -1], out.logits[:, -1, :]
    )


def merge(batches: list[RunningBatch], device) -> RunningBatch:
    """One batch from several: caches right-aligned (zero-filled, masked pads on the left), rows regrouped
    by adapter. Each row's keys/values are copied once, straight into a buffer with room to grow."""
    joined = lambda field: [x for b in batches for x in getattr(b, field)]  # noqa: E731
    keys, rows, slots, outputs = joined("keys"), joined("rows"), joined("slots"), joined("outputs")
    n = len(rows)
    width = max(b.mask.shape[1] for b in batches)
    order = sorted(range(n), key=lambda i: slots[i])
    dest = torch.empty(n, dtype=torch.long, device=device)
    dest[torch.tensor(order, device=device)] = torch.arange(n, device=device)  # row i goes to dest[i]
    starts = [0, *itertools.accumulate(len(b) for b in batches)]
    targets = [dest[lo:hi] for lo, hi in itertools.pairwise(starts)]
    room = max(r.max_new_tokens - len(o) for r, o in zip(rows, outputs))

    def gather(tensors: list[torch.Tensor], shape: tuple, dim: int) -> torch.Tensor:
        out = tensors[0].new_zeros(shape)
        for t, to in zip(tensors, targets):
            if dim == 0:
                out[to] = t
            else:  # right-aligned along `dim` (2 for keys/values, 1 for the mask)
                region = [slice(None)] * len(shape)
                region[dim] = slice(width - t.shape[dim], width)
                region[0] = to
                out[tuple(region)] = t
        return out

    layers = []
    for per_batch in zip(*(b.cache.layers for b in batches)):
        heads, dim = per_batch[0].keys.shape[1], per_batch[0].keys.shape[3]
        shape = (n, heads, width + room, dim)
        layers.append(
            GrowingLayer(
                gather([layer.keys for layer in per_batch], shape, 2),
                gather([layer.values for layer in per_batch], shape, 2),
                width,
            )
        )
    pick = lambda xs: [xs[i] for i in order]  # noqa: E731
    return RunningBatch(
        pick(keys),
        pick(rows),
        pick(slots),
        pick(outputs),
        cache_of(layers),
        gather([b.mask for b in batches], (n, width), 1),
        gather([b.positions for b in batches], (n,), 0),
        gather([b.logits for b in batches], (n, batches[0].logits.shape[1]), 0),
    )
