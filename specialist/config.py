"""Typed configs. Each model is at once the YAML schema (unknown keys are errors) and the CLI's flags."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from specialist.base_models import DEFAULT_BASE_MODEL
from specialist.errors import SpecialistError
from specialist.generalist import GeneralistFilter
from specialist.paths import default_generalist_data, default_task_data
from specialist.prompt_format import DEFAULT_NUM_EXAMPLES


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MixtureConfig(StrictModel):
    """Training data: task instances plus optional generalist records."""

    task_data: Path = Field(
        default_factory=default_task_data,
        description="folder of SuperNI task files (.json/.json.gz), or an inline task file (specialist.tasks.InlineTask)",
    )
    task: list[str] = Field(default_factory=list, description="SuperNI task name (repeatable)")
    category: list[str] = Field(default_factory=list, description="select every task of this category (repeatable)")
    task_list: Path | None = Field(None, description="file listing task names, one per line (a split list)")
    instances_per_task: int | Literal["all"] = Field(
        64,
        description="training instances per task, drawn outside the evaluation set (SuperNI: the first 100); or 'all'",
    )
    generalist_data: str = Field(
        default_factory=lambda: str(default_generalist_data()),
        description="Alpaca-style JSON/JSONL(.gz) file or HF dataset id",
    )
    generalist_ratio: float | None = Field(
        None, ge=0, le=100, description="generalist records per specialist example (K = R x specialist examples)"
    )
    generalist_count: int | None = Field(None, ge=0, description="absolute number of generalist records (0: none)")
    generalist_filter: GeneralistFilter = Field(
        "none", description="'no-facts' drops generalist records whose answers assert dates, numbers or names"
    )
    selection_instances: int = Field(
        0,
        ge=0,
        le=10_000,
        description="answered instances at the end of each task's training pool kept out of training "
        "(the selection set `build` compares candidates on)",
    )
    num_examples: int = Field(
        DEFAULT_NUM_EXAMPLES, ge=0, le=8, description="positive examples shown in each task prompt"
    )
    seed: int = Field(1, description="seed for sampling, shuffling, LoRA init and dropout")

    @model_validator(mode="after")
    def _one_generalist_amount(self):
        if self.generalist_ratio is not None and self.generalist_count is not None:
            raise ValueError("give --generalist-ratio or --generalist-count, not both")
        if isinstance(self.instances_per_task, int) and self.instances_per_task < 1:
            raise ValueError("instances_per_task must be >= 1 or 'all'")
        return self


class LoraSettings(StrictModel):
    """LoRA adapter shape."""

    lora_rank: int = Field(16, ge=1, le=1024, description="LoRA rank r")
    lora_alpha: float = Field(32.0, gt=0, description="LoRA alpha (scale = alpha / r)")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA input")
    target_modules: list[str] = Field(
        default_factory=lambda: ["all-linear"],
        description="module names to adapt; 'all-linear' = every linear layer of attention and MLP (not lm_head)",
    )


class OptimSettings(StrictModel):
    """Optimisation and batching."""

    learning_rate: float = Field(2e-4, gt=0, le=1, description="peak learning rate (LoRA: ~10x a full fine-tune's)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="fraction of steps with linear warm-up")
    batch_size: int = Field(8, ge=1, description="sequences per micro-batch")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    max_seq_len: int = Field(
        1024, ge=16, description="longest prompt+response in tokens; longer examples drop examples, then are skipped"
    )
    max_steps: int | None = Field(None, ge=1, description="optimizer steps to run (exclusive with --epochs)")
    epochs: float | None = Field(None, gt=0, description="passes over the mixture (exclusive with --max-steps)")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping norm")
    share_prompt_prefixes: bool = Field(
        True,
        description="run the prompt prefix that rows of a micro-batch share (a task's definition and "
        "demonstrations) once, each row masked to see only the prefix and itself: the same loss and gradients "
        "from fewer positions (Llama-family models on SDPA attention; other models pad)",
    )
    gradient_checkpointing: bool = Field(
        False,
        description="keep only each layer's input and recompute its activations in the backward pass: far less "
        "memory for long sequences, at the cost of a second forward pass through each layer",
    )


class RunSettings(StrictModel):
    """Base model, output and run control."""

    base_model: str = Field(DEFAULT_BASE_MODEL, description="packaged default, local HF model directory or hub id")
    out: Path = Field(description="adapter directory to create (must not exist unless --resume)")
    checkpoint_every: int = Field(50, ge=1, description="save a resumable checkpoint every N steps")
    resume: bool = Field(False, description="continue an interrupted run of the same config from its last checkpoint")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu or cuda[:N]")
    num_threads: int | None = Field(None, ge=1, le=256, description="CPU threads for torch (default: all cores)")
    progress: bool = Field(True, description="show a progress bar")
    nproc: int = Field(
        1,
        ge=1,
        le=64,
        description="data-parallel training processes (torch.distributed: gloo on CPU, one GPU each with CUDA); "
        "the global batch stays batch-size x grad-accum",
    )


class TrainConfig(RunSettings, OptimSettings, LoraSettings, MixtureConfig):
    """`specialist train`: every flag, also readable from YAML via --config."""

    # Options that say one thing two ways: a flag for one replaces the YAML's value of any of them.
    exclusive_options: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("max_steps", "epochs"),
        ("generalist_ratio", "generalist_count"),
    )

    @model_validator(mode="after")
    def _one_length(self):
        if self.max_steps is not None and self.epochs is not None:
            raise ValueError("give --max-steps or --epochs, not both")
        return self

    @property
    def effective_epochs(self) -> float | None:
        """Epochs to run when --max-steps is not given (one pass by default)."""
        return None if self.max_steps is not None else (self.epochs or 1.0)

    def fingerprint(self) -> str:
        """Identity of a run: everything that changes the result (not where it is written or whether it resumes)."""
        # Neither the process count, checkpointing nor prefix sharing changes the result (tested): a run resumes
        # across them.
        fields = self.model_dump(
            mode="json",
            exclude={
                "out",
                "resume",
                "progress",
                "num_threads",
                "checkpoint_every",
                "nproc",
                "gradient_checkpointing",
                "share_prompt_prefixes",
            },
        )
        if not fields["selection_instances"]:  # added later: runs without a selection set keep their identity
            del fields["selection_instances"]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def load_yaml_config(path: Path) -> dict:
    """Read a YAML config into a dict (validation happens when merged with the CLI flags)."""
    path = Path(path)
    if not path.is_file():
        raise SpecialistError(f"config file {path} does not exist", "pass an existing YAML file to --config")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise SpecialistError(f"config file {path}{where} is not valid YAML", "fix the syntax") from None
    if not isinstance(data, dict):
        raise SpecialistError(f"config file {path} must be a mapping of option: value", "see configs/ for examples")
    return {k.replace("-", "_"): v for k, v in data.items()}


def validate_config(model: type[BaseModel], values: dict, source: str = "config"):
    """Validate, turning pydantic's multi-line report into one line naming every bad field."""
    try:
        return model.model_validate(values)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            field = ".".join(str(x) for x in err["loc"]) or "config"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"unknown option {field!r}" if err["type"] == "extra_forbidden" else f"{field}: {msg}")
        raise SpecialistError(f"invalid {source}: " + "; ".join(problems), "see --help for the options") from None
