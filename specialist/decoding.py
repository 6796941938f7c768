"""Batched decoding for many adapters at once, with the shared prompt prefix of each task computed once.

Evaluation and serving both generate here. A SuperNI prompt is mostly its task's definition and
demonstrations (about 80% of the tokens for sst2), identical for every instance; on a CPU, prefill of those
tokens dominates. So each row names how many leading tokens it shares with its task's other prompts
(`prefix_len`), and their keys/values are computed once per (adapter, prefix) and kept in a `PrefixCache`.
A batch then prefills only the instance tokens, on top of the cached prefixes:

    row i:  [pad .. | prefix_i (cached) | pad .. | suffix_i]   attention mask 0 over the pads
            position ids count only real tokens, so every row sees exactly its own prompt.

New rows are prefilled in passes of similar uncached length (`prefill_groups`): padding a short instance to
the longest one costs real work on a CPU. Rows are grouped by adapter (MultiLoRA applies each adapter to its
own rows), finished rows leave the batch, and each row stops on EOS, its token budget, or when `on_token` says
so (a stop string, a gone client).
Greedy rows are deterministic; sampled rows use their own generator when they have a seed.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from specialist.multi_lora import MultiLoRA
from specialist.prompt_format import shared_prefix


@dataclass
class DecodeRow:
    prompt_ids: list[int]
    max_new_tokens: int
    adapter: str | None = None  # a name loaded in the MultiLoRA, None = the bare base model
    prefix_len: int = 0  # leading prompt tokens shared with other prompts of the task: cached per adapter
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    generator: torch.Generator | None = None  # for seeded sampling


class PrefixCache:
    """Keys/values of shared prompt prefixes per (adapter slot, prefix tokens), least recently used dropped first.

    Slots are never reused (MultiLoRA), so an entry can't outlive its adapter's weights; `drop_slot` just frees
    memory early."""

    def __init__(self, max_bytes: int = 512 * 2**20):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, tuple[int, ...]], list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
        self._bytes: dict[tuple, int] = {}
        self.hits = self.misses = 0

    def get(self, key):
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        else:
            self.misses += 1
        return entry

    def put(self, key, layers) -> None:
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
        self.keys, self.rows, self.slots, self.outputs = ([xs[k] for k in keep] for xs in (self.keys, self.rows, self.slots, self.outputs))
        # Columns only rows that left were using: drop them, or a batch that never drains grows without bound.
        unused = int(self.mask.any(0).int().argmax())
        if unused:
            self.mask = self.mask[:, unused:]
            for layer in self.cache.layers:
                layer.drop_left(unused)


class _GrowingLayer(DynamicLayer):
    """A cache layer with room to grow: a new token is written in place, not appended by copying the cache
    (transformers' DynamicLayer concatenates every step, which copies every row's keys and values)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int):
        """`keys`/`values` are the buffers [rows, heads, capacity, dim]; the first `length` positions are filled."""
        super().__init__()
        self._keys, self._values, self.length = keys, values, length
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self._views()

    @classmethod
    def copy_of(cls, keys: torch.Tensor, values: torch.Tensor, room: int) -> "_GrowingLayer":
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


def _growing_cache(layers: list[tuple[torch.Tensor, torch.Tensor]], room: int) -> DynamicCache:
    """A cache over these keys/values, copied into buffers with `room` more positions (none: no copy)."""
    cache = DynamicCache()
    cache.layers = [_GrowingLayer.copy_of(k, v, room) if room else _GrowingLayer(k, v, k.shape[2]) for k, v in layers]
    return cache


def eos_ids(model, tokenizer) -> list[int]:
    """Every token that ends a generation: the tokenizer's EOS plus the model's configured ones (some have several)."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    configured = configured if isinstance(configured, list) else [configured] if configured is not None else []
    return sorted({tokenizer.eos_token_id, *configured} - {None})


class Decoder:
    """One model, its adapters and its prefix cache. Not thread-safe: one thread decodes at a time."""

    def __init__(self, model, tokenizer, prefix_cache: PrefixCache | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.lora = MultiLoRA(model)
        self.eos_ids = set(eos_ids(model, tokenizer))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.prefix_cache = prefix_cache if prefix_cache is not None else PrefixCache()
        self._encode_prefix = lru_cache(maxsize=1024)(lambda text: tuple(tokenizer(text)["input_ids"]))
        self.device = next(model.parameters()).device
        # A sliding-window layer would need the prefix cut to its window: no prefix caching for such models.
        self.caches_prefixes = getattr(model.config.get_text_config(decoder=True), "sliding_window", None) is None
        # What a prefill pass costs beyond its tokens, in tokens (see prefill_groups). Measured for SmolLM2 on a
        # 2-core CPU: a pass costs ~65 ms plus ~1 ms per token. On a GPU tokens are nearly free: one pass,
        # unless one prompt is thousands of tokens longer than the rest.
        self.prefill_call_tokens = 64 if self.device.type == "cpu" else 4096

    def prefix_len(self, prompt: str, prompt_ids: list[int]) -> int:
        """How many leading tokens of this prompt its task's other prompts share (0 for a raw prompt)."""
        shared = shared_prefix(prompt)
        return common_prefix_len(list(self._encode_prefix(shared)), prompt_ids) if shared else 0

    def load(self, name: str, path) -> None:
        self.lora.load(name, path)

    def unload(self, name: str) -> None:
        self.prefix_cache.drop_slot(self.lora.slot(name))
        self.lora.unload(name)

    @torch.no_grad()
    def decode(self, rows: list[DecodeRow], on_token: Callable[[int, int], bool] | None = None) -> list[list[int]]:
        """New token ids per row (EOS not included). `on_token(row, token)` returning True ends that row."""
        outputs: list[list[int]] = [[] for _ in rows]
        batch = self.admit(None, rows, list(range(len(rows)))) if rows else None
        while batch is not None:
            finished, batch = self.step(batch, on_token)
            for row, tokens in finished:
                outputs[row] = tokens
        return outputs

    @torch.no_grad()
    def admit(self, batch: RunningBatch | None, rows: list[DecodeRow], keys: list) -> RunningBatch | None:
        """Prefill `rows` and join them to a running batch (continuous batching); `keys` name them to the caller.

        Rows are prefilled in groups of similar uncached length (`prefill_groups`), so a short prompt is not
        padded to the longest one; the groups and the running batch then become one batch in a single copy."""
        if not rows:
            return batch
        uncached = [len(r.prompt_ids) - self._cached_len(r) for r in rows]
        groups = prefill_groups(uncached, self.prefill_call_tokens)
        merging = batch is not None or len(groups) > 1
        parts = []
        for group in groups:
            group = sorted(group, key=lambda i: self.lora.slot(rows[i].adapter))  # MultiLoRA wants rows grouped
            parts.append(self._prefill([rows[i] for i in group], [keys[i] for i in group], room=not merging))
        parts = parts if batch is None else [batch, *parts]
        return parts[0] if len(parts) == 1 else self._merge(parts)

    @torch.no_grad()
    def step(self, batch: RunningBatch, on_token: Callable | None = None) -> tuple[list[tuple], RunningBatch | None]:
        """Pick each row's next token; rows that finish leave with their tokens, the rest advance one position.

        Returns ([(key, tokens) of finished rows], the batch or None once it is empty)."""
        tokens = self._choose(batch.logits, batch.rows)
        keep, finished = [], []
        for k, (key, row, token) in enumerate(zip(batch.keys, batch.rows, tokens)):
            out = batch.outputs[k]
            if token not in self.eos_ids:
                out.append(token)
                stop = on_token(key, token) if on_token is not None else False
                if not stop and len(out) < row.max_new_tokens:
                    keep.append(k)
                    continue
            finished.append((key, out))
        if not keep:
            return finished, None
        if len(keep) < len(tokens):  # finished rows leave the batch
            batch.select(keep, self.device)
            tokens = [tokens[k] for k in keep]
        batch.mask = torch.cat([batch.mask, batch.mask.new_ones(len(keep), 1)], dim=1)
        batch.positions = batch.positions + 1
        step = torch.tensor(tokens, device=self.device).unsqueeze(1)
        with self.lora.rows(batch.slots):
            out = self.model(input_ids=step, attention_mask=batch.mask, position_ids=batch.positions.unsqueeze(1),
                             past_key_values=batch.cache, use_cache=True, logits_to_keep=1)  # fmt: skip
        batch.logits = out.logits[:, -1, :]
        return finished, batch

    # -- prefill -----------------------------------------------------------------------------------------------

    def _cached_len(self, row: DecodeRow) -> int:
        """Leading prompt tokens whose keys/values come from the prefix cache. At least one token is not
        cached: its logits are what the first step samples from."""
        return max(0, min(row.prefix_len, len(row.prompt_ids) - 1)) if self.caches_prefixes else 0

    def _prefix_layers(self, ids: list[int], slot: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        key = (slot, tuple(ids))
        layers = self.prefix_cache.get(key)
        if layers is None:
            with self.lora.rows([slot]):
                out = self.model(input_ids=torch.tensor([ids], device=self.device), use_cache=True, logits_to_keep=1)
            layers = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
            self.prefix_cache.put(key, layers)
        return layers

    def _prefill(self, rows: list[DecodeRow], keys: list, room: bool = True) -> RunningBatch:
        """Run the uncached part of each prompt; rows come grouped by adapter. With `room`, the cache gets
        space for every new token now (a batch about to be merged is copied anyway: no room, no copy)."""
        n = len(rows)
        slots = [self.lora.slot(r.adapter) for r in rows]
        prefix = [self._cached_len(r) for r in rows]
        suffix = [len(r.prompt_ids) - p for r, p in zip(rows, prefix)]
        width_p, width_s = max(prefix), max(suffix)
        input_ids = torch.full((n, width_s), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width_p + width_s), dtype=torch.long)
        positions = torch.zeros((n, width_s), dtype=torch.long)
        for i, (r, p, s) in enumerate(zip(rows, prefix, suffix)):
            input_ids[i, width_s - s :] = torch.tensor(r.prompt_ids[p:])
            mask[i, width_p - p : width_p] = 1
            mask[i, width_p + width_s - s :] = 1
            positions[i, width_s - s :] = torch.arange(p, p + s)
        cache = DynamicCache()
        if width_p:
            per_row = [self._prefix_layers(r.prompt_ids[:p], slot) if p else None for r, p, slot in zip(rows, prefix, slots)]
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
        input_ids, mask, positions = input_ids.to(self.device), mask.to(self.device), positions.to(self.device)
        with self.lora.rows(slots):
            out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                             past_key_values=cache, use_cache=True, logits_to_keep=1)  # fmt: skip
        layers = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        cache = _growing_cache(layers, max(r.max_new_tokens for r in rows) if room else 0)
        return RunningBatch(list(keys), list(rows), slots, [[] for _ in rows], cache, mask,
                            positions[:, -1], out.logits[:, -1, :])  # fmt: skip

    def _merge(self, batches: list[RunningBatch]) -> RunningBatch:
        """One batch from several: caches right-aligned (zero-filled, masked pads on the left), rows regrouped
        by adapter. Each row's keys/values are copied once, straight into a buffer with room to grow."""
        joined = lambda field: [x for b in batches for x in getattr(b, field)]  # noqa: E731
        keys, rows, slots, outputs = joined("keys"), joined("rows"), joined("slots"), joined("outputs")
        n = len(rows)
        width = max(b.mask.shape[1] for b in batches)
        order = sorted(range(n), key=lambda i: slots[i])
        dest = torch.empty(n, dtype=torch.long, device=self.device)
        dest[torch.tensor(order, device=self.device)] = torch.arange(n, device=self.device)  # row i goes to dest[i]
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
            layers.append(_GrowingLayer(gather([layer.keys for layer in per_batch], shape, 2),
                                        gather([layer.values for layer in per_batch], shape, 2), width))  # fmt: skip
        cache = DynamicCache()
        cache.layers = layers
        pick = lambda xs: [xs[i] for i in order]  # noqa: E731
        return RunningBatch(
            pick(keys), pick(rows), pick(slots), pick(outputs), cache,
            gather([b.mask for b in batches], (n, width), 1), gather([b.positions for b in batches], (n,), 0),
            gather([b.logits for b in batches], (n, batches[0].logits.shape[1]), 0),
        )  # fmt: skip

    # -- choosing the next token -------------------------------------------------------------------------------

    def _choose(self, logits: torch.Tensor, rows: list[DecodeRow]) -> list[int]:
        tokens = logits.argmax(dim=-1).tolist()
        for k, row in enumerate(rows):
            if row.temperature > 0:
                tokens[k] = _sample(logits[k].float(), row.temperature, row.top_p, row.generator)
        return tokens


def _sample(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> int:
    # Shift by the max first: with a tiny temperature the scaled logits overflow, and inf - inf is NaN.
    probs = torch.softmax((logits - logits.max()) / temperature, dim=-1)
    if top_p < 1.0:  # nucleus: keep the smallest set of tokens whose probability reaches top_p
        sorted_probs, sorted_ids = probs.sort(descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > top_p
        sorted_probs[outside] = 0
        probs = torch.zeros_like(probs).scatter_(0, sorted_ids, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator).item())
