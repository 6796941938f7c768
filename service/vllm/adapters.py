"""What a vLLM engine can serve, checked before an adapter is routed to it, and the name it has there.

vLLM refuses these only when the adapter is loaded (or, for a rank above `max_lora_rank`, with a 500):
refusing them here gives the reason at promotion, while the previous champion keeps serving.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from specialist.adapters.manifest import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from specialist.errors import SpecialistError
from specialist.paths import sha256_file

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the only values vLLM takes for max_lora_rank
# The projections vLLM has LoRA layers for in Llama-family models (it packs q/k/v and gate/up itself).
VLLM_LORA_MODULES = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
# What an engine elsewhere downloads to load an adapter (the manifest stays with the service).
ARTIFACT_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS)
NAME_PREFIX = "sf-"  # engine-side names of this service's adapters: anything else on an engine is not ours


class NotServable(SpecialistError):
    """An adapter a vLLM engine cannot serve as configured: refused until it (or the engine's limits) change."""


def vllm_problems(adapter_dir: Path, max_lora_rank: int) -> list[str]:
    """Why vLLM would refuse this (already LoRA-only) adapter, [] when it would serve it."""
    config = json.loads((Path(adapter_dir) / ADAPTER_CONFIG).read_text())
    problems = []
    rank = max([config.get("r", 0), *(config.get("rank_pattern") or {}).values()])
    if rank > max_lora_rank:
        problems.append(
            f"LoRA rank {rank} is above the engine's max_lora_rank {max_lora_rank} (raise --vllm-max-lora-rank)"
        )
    targets = config.get("target_modules") or []
    # peft names a module by its full path or its last part; a string is a regex, which vLLM matches itself.
    names = {t.rsplit(".", 1)[-1] for t in targets} if isinstance(targets, list) else set()
    unsupported = sorted(names - VLLM_LORA_MODULES)
    if unsupported:
        problems.append(
            f"target modules {unsupported} have no vLLM LoRA layer (it serves {', '.join(sorted(VLLM_LORA_MODULES))})"
        )
    if config.get("use_dora"):
        problems.append("DoRA adapters are not served by vLLM (train without use_dora)")
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        problems.append("adapters with bias terms are not served by vLLM (train with bias='none')")
    return problems


def require_servable(adapter_dir: Path, max_lora_rank: int) -> None:
    problems = vllm_problems(adapter_dir, max_lora_rank)
    if problems:
        raise NotServable(f"vLLM cannot serve {Path(adapter_dir).name}: " + "; ".join(problems))


def content_id(adapter_dir: Path, weights_sha256: str | None = None) -> str:
    """The adapter's name on every engine: its content address (config and weights), so every replica and
    engine agrees on it, and a new version never reuses an old name (vLLM keys its prefix cache by the name).
    `weights_sha256`: the weights' hash where it is known (the registry records it), else it is computed."""
    weights = weights_sha256 or sha256_file(Path(adapter_dir) / ADAPTER_WEIGHTS)
    config = (Path(adapter_dir) / ADAPTER_CONFIG).read_bytes()
    return NAME_PREFIX + hashlib.sha256(config + b"\0" + weights.encode()).hexdigest()[:24]


def is_content_id(name: str) -> bool:
    return re.fullmatch(NAME_PREFIX + "[0-9a-f]{24}", name) is not None
