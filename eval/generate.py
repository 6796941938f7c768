"""Greedy generation over many prompts for several adapters at once.

Rows of one batch may belong to different adapters (and None, the bare base model): the shared decoder
(`specialist.decoding`) applies each adapter to its own rows and computes each task's shared prompt prefix
once per adapter. No process-global "active adapter" is ever switched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from specialist.decoding import Decoder, DecodeRow

BASE_ADAPTER = None  # the bare base model, in GenerationRequest.adapter


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    adapter: str | None  # an adapter name loaded into the decoder, or BASE_ADAPTER


def load_decoder(base_model, tokenizer, adapters: dict[str, Path]) -> Decoder:
    """A decoder over `base_model` with every adapter (name -> PEFT dir) loaded: LoRA-only safetensors only."""
    decoder = Decoder(base_model, tokenizer)
    for name, path in adapters.items():
        decoder.load(name, path)  # an unusable adapter raises AdapterLoadError, a one-line SpecialistError
    return decoder


def generate(decoder: Decoder, requests: list[GenerationRequest], max_new_tokens: int, batch_size: int = 16,
             progress: bool = True) -> list[str]:  # fmt: skip
    """Greedy completions in request order. Batches hold prompts of similar length."""
    tokenizer = decoder.tokenizer
    rows = []
    for r in requests:
        ids = tokenizer(r.prompt)["input_ids"]
        rows.append(DecodeRow(ids, max_new_tokens, r.adapter, decoder.prefix_len(r.prompt, ids)))
    # Similar uncached lengths in one batch: little padding in the prefill.
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].prompt_ids) - rows[i].prefix_len, reverse=True)
    outputs: list[str] = [""] * len(requests)
    bar = tqdm(total=len(requests), desc="generating", unit="ex", disable=not progress, dynamic_ncols=True)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        for i, ids in zip(batch, decoder.decode([rows[i] for i in batch])):
            outputs[i] = tokenizer.decode(ids, skip_special_tokens=True).strip()
        bar.update(len(batch))
    bar.close()
    return outputs
