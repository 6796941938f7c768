"""Adapter artifacts: the manifest beside every PEFT adapter, and the checks an adapter must pass to be loaded.

An adapter directory is a standard PEFT directory (adapter_config.json + adapter_model.safetensors, LoRA
weights only, so vLLM/TGI/LoRAX load it unchanged) plus `manifest.json`, which records how to render its
prompts and how it was made.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from specialist.errors import SpecialistError
from specialist.prompt_format import PROMPT_FORMAT_NAME, PROMPT_FORMAT_VERSION, TaskPrompt, check_supported

MANIFEST_NAME = "manifest.json"
DECISION_NAME = "gate_decision.json"  # written by the gate (eval.gate), required by the registry
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
MANIFEST_SCHEMA_VERSION = 1
# PEFT LoRA tensors are named ...lora_A.weight / ...lora_B.weight (plus lora_magnitude_vector for DoRA).
_LORA_KEY = re.compile(r"\.lora_(A|B|magnitude_vector)(\.weight)?$|\.lora_(embedding_A|embedding_B)$")


class BaseModelInfo(BaseModel):
    """The base model an adapter was trained on. `source` and `source_sha256` are set for a converted model (the
    packaged default: a Q4_1 GGUF de-quantized to float32); manifests written before they existed still load."""

    id: str
    content_sha256: str
    source: str | None = Field(None, description="what the weights were converted from, e.g. a GGUF file")
    source_sha256: str | None = Field(None, description="sha256 of that file")


class SourceInfo(BaseModel):
    """One data file (or dataset) the mixture drew from."""

    source: str
    sha256: str
    available: int = Field(description="records available to training (after the held-out split)")
    used: int = Field(description="records in the mixture, repeats included")
    license: str | None = Field(None, description="the data's licence as its file or its known source states it")


class MixtureRecord(BaseModel):
    spec: dict[str, Any] = Field(description="the mixture options as given")
    specialist_examples: int
    generalist_examples: int
    per_task: dict[str, int]
    sources: dict[str, SourceInfo]
    skipped_too_long: int = 0
    content_sha256: str = Field(description="sha256 of the realized, ordered mixture")


class TrainingRecord(BaseModel):
    steps: int
    epochs: float
    examples_seen: int
    tokens: int = Field(description="unpadded tokens processed")
    tokens_per_second: float
    wall_seconds: float
    first_loss: float | None
    final_loss: float | None
    device: str
    dtype: str
    processes: int = Field(1, description="data-parallel training processes (`specialist train --nproc`)")
    global_batch: int | None = Field(None, description="sequences per optimizer step, over every process")


class AdapterManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int = MANIFEST_SCHEMA_VERSION
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    base_model: BaseModelInfo
    prompt_format: str = PROMPT_FORMAT_NAME
    prompt_format_version: int = PROMPT_FORMAT_VERSION
    tasks: dict[str, TaskPrompt] = Field(description="task name -> how to render its prompts")
    mixture: MixtureRecord
    hyperparameters: dict[str, Any]
    seed: int
    training: TrainingRecord
    loss_curve: list[float] = Field(description="loss per optimizer step")
    package_versions: dict[str, str]
    run_fingerprint: str = Field("", description="hash of the options that shape the result (TrainConfig.fingerprint)")


def write_manifest(adapter_dir: Path, manifest: AdapterManifest) -> Path:
    path = Path(adapter_dir) / MANIFEST_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(manifest.model_dump_json(indent=2) + "\n")
    tmp.replace(path)
    return path


def read_manifest(adapter_dir: Path) -> AdapterManifest:
    path = Path(adapter_dir) / MANIFEST_NAME
    if not path.is_file():
        raise SpecialistError(
            f"{adapter_dir} has no {MANIFEST_NAME}", "pass an adapter directory made by `specialist train`"
        )
    try:
        return AdapterManifest.model_validate_json(path.read_text())
    except ValidationError as e:
        raise SpecialistError(
            f"{path} is not a valid manifest: {str(e).splitlines()[1].strip()}", "retrain the adapter"
        ) from None


def lora_only_problems(adapter_dir: Path) -> list[str]:
    """Why this directory is not a loadable, LoRA-only PEFT adapter ([] when it is).

    Reads only the safetensors header: pickle weights (`adapter_model.bin`) are refused, never opened.
    """
    adapter_dir = Path(adapter_dir)
    problems = []
    if not (adapter_dir / ADAPTER_CONFIG).is_file():
        problems.append(f"missing {ADAPTER_CONFIG}")
    if not (adapter_dir / ADAPTER_WEIGHTS).is_file():
        extra = " (pickle .bin weights are refused; re-save with safetensors)" if any(adapter_dir.glob("*.bin")) else ""
        problems.append(f"missing {ADAPTER_WEIGHTS}{extra}")
        return problems
    try:
        from safetensors import safe_open

        with safe_open(adapter_dir / ADAPTER_WEIGHTS, framework="pt") as f:
            keys = list(f.keys())
    except Exception as e:  # a truncated or corrupt file raises safetensors' own errors
        return problems + [f"{ADAPTER_WEIGHTS} is unreadable: {str(e)[:120]}"]
    non_lora = [k for k in keys if not _LORA_KEY.search(k)]
    if non_lora:
        problems.append(f"{len(non_lora)} non-LoRA tensors, e.g. {non_lora[0]}")
    if not keys:
        problems.append("no tensors")
    try:
        config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text())
        if config.get("modules_to_save"):
            problems.append(f"modules_to_save={config['modules_to_save']} (full layers are not LoRA)")
    except (OSError, ValueError):
        problems.append(f"{ADAPTER_CONFIG} is not valid JSON")
    return problems


@dataclass(frozen=True)
class AdapterCheck:
    """Whether an adapter directory may be loaded, and every reason it may not: the one acceptability check that
    training, the gate, evaluation, the registry and every serving engine call."""

    path: Path
    lora_problems: list[str]  # not a loadable, LoRA-only safetensors PEFT adapter
    manifest: AdapterManifest | None
    manifest_error: SpecialistError | None  # missing or invalid manifest
    prompt_format_error: SpecialistError | None  # a prompt format this version cannot render
    base_mismatch: str | None  # trained for another base model (checked only when a base is given)

    @property
    def problems(self) -> list[str]:
        errors = (self.manifest_error, self.prompt_format_error)
        return [
            *self.lora_problems,
            *(e.problem for e in errors if e),
            *([self.base_mismatch] if self.base_mismatch else []),
        ]

    @property
    def ok(self) -> bool:
        return not self.problems

    def require(self, fix: str | None = None, error: type[SpecialistError] = SpecialistError) -> AdapterManifest | None:
        """The manifest of an acceptable adapter; otherwise `error` naming every problem, and `fix` (default: the
        fix of the first problem)."""
        if self.ok:
            return self.manifest
        if self.lora_problems:
            raise error(
                f"adapter {self.path} is refused: {'; '.join(self.problems)}",
                fix or "pass a LoRA adapter made by `specialist train`",
            )
        for e in (self.manifest_error, self.prompt_format_error):
            if e:
                raise error(f"adapter {self.path}: {e.problem}", fix or e.fix)
        raise error(f"adapter {self.path} {self.base_mismatch}", fix or "use it with the base model it was trained on")


def check_adapter(
    adapter_dir: Path, base_sha256: str | None = None, base_id: str | None = None, need_manifest: bool = True
) -> AdapterCheck:
    """Check an adapter directory against everything a stage needs before loading it (reads no weights).

    `base_sha256`: the content hash of the base model it will run on (None: not checked). `need_manifest=False`
    accepts a bare PEFT directory (the inference core can run one; nothing else can render its prompts)."""
    path = Path(adapter_dir)
    lora = lora_only_problems(path)
    manifest = manifest_error = format_error = mismatch = None
    if need_manifest or (path / MANIFEST_NAME).is_file():
        try:
            manifest = read_manifest(path)
        except SpecialistError as e:
            manifest_error = e
    if manifest is not None:
        try:
            check_supported(manifest.prompt_format, manifest.prompt_format_version)
        except SpecialistError as e:
            format_error = e
        trained = manifest.base_model
        if base_sha256 and trained.content_sha256 != base_sha256:
            serving = f", not {base_id} ({base_sha256[:12]}...)" if base_id else ""
            mismatch = f"was trained for base model {trained.id} (sha256 {trained.content_sha256[:12]}...){serving}"
    return AdapterCheck(path, lora, manifest, manifest_error, format_error, mismatch)
