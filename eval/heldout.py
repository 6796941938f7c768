"""Score adapters (and the bare base model) on tasks' held-out instances, all in one generation pass."""

from __future__ import annotations

from pathlib import Path

from specialist.adapters import read_manifest
from specialist.base_models import BaseModelRef, load_model, load_tokenizer, pick_device
from specialist.errors import SpecialistError
from specialist.prompt_format import DEFAULT_NUM_EXAMPLES, fit_prompt
from specialist.superni import load_task, split_instances

from eval.generate import BASE_ADAPTER, GenerationRequest, generate, load_adapters
from eval.metrics import score

MAX_INPUT_TOKENS = 1024


def max_new_tokens_for(tokenizer, references: list[list[str]], cap: int = 128) -> int:
    """Room for the longest reference plus slack, bounded: short labels decode in a few steps."""
    longest = max(len(tokenizer(" " + r, add_special_tokens=False)["input_ids"]) for refs in references for r in refs)
    return max(4, min(cap, int(longest * 1.5) + 2))


def evaluate_heldout(
    base: BaseModelRef,
    adapters: dict[str, Path],
    task_dir: Path,
    tasks: list[str],
    include_base: bool = True,
    batch_size: int = 16,
    device: str = "auto",
    progress: bool = True,
) -> dict:
    """{model name: {task: {exact_match, rougeL, predictions}}}; BASE_ADAPTER names the bare base model."""
    manifests = {name: read_manifest(path) for name, path in adapters.items()}
    for name, manifest in manifests.items():
        if manifest.base_model.content_sha256 != base.content_sha256:
            raise SpecialistError(f"adapter {name} was trained on base model {manifest.base_model.id}, not {base.id}", "evaluate it on its own base model")
    torch_device, dtype = pick_device(device)
    tokenizer = load_tokenizer(base, padding_side="left")
    model = load_adapters(load_model(base, torch_device, dtype), adapters)
    names = ([BASE_ADAPTER] if include_base else []) + list(adapters)

    results: dict = {name: {} for name in names}
    for task_name in tasks:
        task = load_task(task_dir, task_name)
        held_out, _ = split_instances(task)
        if not held_out:
            raise SpecialistError(f"task {task_name} has no held-out instances", "pick a task with instances")
        references = [list(i.output) for i in held_out]
        requests: list[GenerationRequest] = []
        for name in names:
            prompt = manifests[name].tasks.get(task_name) if name in manifests else None
            prompt = prompt or task.prompt(DEFAULT_NUM_EXAMPLES)  # the base model sees the same format
            for inst in held_out:
                text = fit_prompt(prompt, inst.input, lambda s: len(tokenizer(s)["input_ids"]), MAX_INPUT_TOKENS)
                requests.append(GenerationRequest(text or prompt.render(inst.input, 0), name))
        outputs = generate(model, tokenizer, requests, max_new_tokens_for(tokenizer, references), batch_size, progress)
        for k, name in enumerate(names):
            preds = outputs[k * len(held_out) : (k + 1) * len(held_out)]
            results[name][task_name] = {**score(preds, references), "predictions": [
                {"id": i.id, "prediction": p, "references": i.output} for i, p in zip(held_out, preds)
            ]}  # fmt: skip
    return results
