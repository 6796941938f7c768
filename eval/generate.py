"""Greedy generation over many prompts for several adapters at once (peft mixed-adapter batches).

Rows of one batch may belong to different adapters: `generate(..., adapter_names=[...])`, with
BASE_ADAPTER for the bare base model. Never `set_adapter` per request: it is process-global state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from specialist.adapters import lora_only_problems
from specialist.errors import SpecialistError

BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in adapter_names


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    adapter: str  # an adapter name loaded into the model, or BASE_ADAPTER


def load_adapters(base_model, adapters: dict[str, Path]):
    """Wrap `base_model` with every adapter (name -> PEFT dir), in eval mode.

    Each directory is checked first: LoRA-only safetensors, so peft never falls back to unpickling a .bin.
    """
    from peft import PeftModel

    model = None
    for name, path in adapters.items():
        problems = lora_only_problems(path)
        if problems:
            raise SpecialistError(f"adapter {path} is refused: {'; '.join(problems)}", "pass a LoRA adapter made by `specialist train`")
        if model is None:
            model = PeftModel.from_pretrained(base_model, path, adapter_name=name)
        else:
            model.load_adapter(path, adapter_name=name)
    return (model or base_model).eval()


@torch.no_grad()
def generate(
    model, tokenizer, requests: list[GenerationRequest], max_new_tokens: int, batch_size: int = 16, progress: bool = True
) -> list[str]:
    """Greedy completions in request order. Batches are sorted by prompt length and left-padded."""
    tokenizer.padding_side = "left"  # generation appends on the right, so pad on the left
    encoded = [tokenizer(r.prompt)["input_ids"] for r in requests]
    order = sorted(range(len(requests)), key=lambda i: len(encoded[i]), reverse=True)
    outputs: list[str] = [""] * len(requests)
    device = next(model.parameters()).device
    uses_adapters = hasattr(model, "peft_config")
    bar = tqdm(total=len(requests), desc="generating", unit="ex", disable=not progress, dynamic_ncols=True)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = tokenizer.pad({"input_ids": [encoded[i] for i in rows]}, return_tensors="pt").to(device)
        kwargs = {"adapter_names": [requests[i].adapter for i in rows]} if uses_adapters else {}
        out = model.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **kwargs,
        )
        new_tokens = out[:, batch["input_ids"].shape[1] :]
        for i, ids in zip(rows, new_tokens):
            outputs[i] = tokenizer.decode(ids, skip_special_tokens=True).strip()
        bar.update(len(rows))
    bar.close()
    return outputs
