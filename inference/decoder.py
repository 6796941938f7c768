"""Batched decoding for many adapters at once, with the shared prompt prefix of each task computed once.

Evaluation and serving both generate here. The loop: new rows are prefilled (`prefill`, on top of the
`prefix_cache`) and join the running batch (continuous batching); every step picks each row's next token
(`sampling`) and runs one forward pass over the batch's growing cache (`kv_cache`). Rows are grouped by
adapter (MultiLoRA applies each adapter to its own rows), finished rows leave the batch, and each row stops on
EOS, its token budget, or when `on_token` says so (a stop string, a gone client).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch

from inference.constraints import Constraint
from inference.kv_cache import KVLayers, RunningBatch
from inference.multi_lora import MultiLoRA
from inference.prefill import merge, prefill, prefill_groups
from inference.prefix_cache import PrefixCache, common_prefix_len, prefix_layers
from inference.sampling import TokenScore, choose, score
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
    top_k: int = 0  # 0 = every token
    repetition_penalty: float = 1.0  # see inference.sampling: 1 = none
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    top_logprobs: int = 0  # alternatives to score per token
    constraint: Constraint | None = None  # a grammar the output must match (inference.constraints)
    typical_p: float = 1.0  # 1 = off (locally typical sampling)


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
    def decode(
        self, rows: list[DecodeRow], on_token: Callable[[int, int, TokenScore], bool] | None = None
    ) -> list[list[int]]:
        """New token ids per row (EOS not included). `on_token(row, token, score)` returning True ends that row."""
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
        return parts[0] if len(parts) == 1 else merge(parts, self.device)

    @torch.no_grad()
    def step(self, batch: RunningBatch, on_token: Callable | None = None) -> tuple[list[tuple], RunningBatch | None]:
        """Pick each row's next token; rows that finish leave with their tokens, the rest advance one position.

        Returns ([(key, tokens) of finished rows], the batch or None once it is empty)."""
        tokens = choose(batch.logits, batch.rows, batch.outputs)
        scores = score(batch.logits, batch.rows, tokens) if on_token is not None else None
        for row, token in zip(batch.rows, tokens):
            if row.constraint is not None:
                row.constraint.advance(token)
        keep, finished = [], []
        for k, (key, row, token) in enumerate(zip(batch.keys, batch.rows, tokens)):
            out = batch.outputs[k]
            if token not in self.eos_ids:
                out.append(token)
                stop = on_token(key, token, scores[k]) if on_token is not None else False
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
            out = self.model(
                input_ids=step,
                attention_mask=batch.mask,
                position_ids=batch.positions.unsqueeze(1),
                past_key_values=batch.cache,
                use_cache=True,
                logits_to_keep=1,
            )
        batch.logits = out.logits[:, -1, :]
        return finished, batch

    @torch.no_grad()
    def prompt_logprobs(self, ids: list[int], adapter: str | None) -> list[float | None]:
        """log p of each prompt token given the ones before it, with `adapter` (the first has none): what TGI's
        `decoder_input_details` reports. One full forward pass, outside the running batch."""
        with self.lora.rows([self.lora.slot(adapter)]):
            logits = self.model(input_ids=torch.tensor([ids], device=self.device)).logits[0].float()
        logp = torch.log_softmax(logits[:-1], dim=-1)
        follow = torch.tensor(ids[1:], device=self.device)
        return [None, *logp[torch.arange(len(ids) - 1, device=self.device), follow].tolist()]

    def _cached_len(self, row: DecodeRow) -> int:
        """Leading prompt tokens whose keys/values come from the prefix cache. At least one token is not
        cached: its logits are what the first step samples from."""
        return max(0, min(row.prefix_len, len(row.prompt_ids) - 1)) if self.caches_prefixes else 0

    def _prefix_kv(self, ids: list[int], slot: int) -> KVLayers:
        return prefix_layers(self.prefix_cache, self.model, self.lora, ids, slot, self.device)

    def _prefill(self, rows: list[DecodeRow], keys: list, room: bool = True) -> RunningBatch:
        """One prefill pass over rows grouped by adapter (a method: tests count the passes)."""
        cached = [self._cached_len(r) for r in rows]
        return prefill(self.model, self.lora, rows, keys, cached, self._prefix_kv, self.pad_id, self.device, room)
