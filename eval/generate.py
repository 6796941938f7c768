"""Greedy generation over many prompts for several adapters at once.

Rows of one batch may belong to different adapters (and None, the bare base model): the shared decoder
(`inference.decoder`) applies each adapter to its own rows and computes each task's shared prompt prefix
once per adapter. No process-global "active adapter" is ever switched. Every row ends by the prompt format's
stop rule (`FRAME_STOPS`) as well as at EOS, whichever model it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from inference.decoder import Decoder, DecodeRow
from specialist.prompt_format import FRAME_STOPS, cut_at_frame

# A frame marker is ASCII, so each of its tokens decodes to at least one character: a marker that ends at the
# newest token lies within this many last tokens.
_STOP_WINDOW = max(len(s) for s in FRAME_STOPS) + 1


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


def generate(
    decoder: Decoder,
    requests: list[GenerationRequest],
    max_new_tokens: int,
    batch_size: int = 16,
    progress: bool = True,
) -> list[str]:
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
        so_far: list[list[int]] = [[] for _ in batch]

        def at_frame_marker(row: int, token: int, _score) -> bool:
            so_far[row].append(token)
            return cut_at_frame(tokenizer.decode(so_far[row][-_STOP_WINDOW:], skip_special_tokens=True))[1]

        for i, ids in zip(batch, decoder.decode([rows[i] for i in batch], at_frame_marker)):
            outputs[i] = cut_at_frame(tokenizer.decode(ids, skip_special_tokens=True), final=True)[0].strip()
        bar.update(len(batch))
    bar.close()
    return outputs
