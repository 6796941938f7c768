"""The typed options of the factory's recipes: one schema for the CLI flags, the YAML files and the job API.

    specialist build --config configs/build.yaml      specialist experiment --config configs/experiment_narrow.yaml

Kept free of torch so `specialist --help` stays fast (the recipes import the model stack only when they run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from specialist.config import StrictModel, TrainConfig
from specialist.generalist import GeneralistSpec, parse_specs
from specialist.superni import HELD_OUT_INSTANCES

AUTO_CANDIDATES = ["0", "1.0", "1.0:no-facts"]


class BuildSettings(StrictModel):
    """Candidates, selection and the gate."""

    candidates: list[str] = Field(
        default_factory=lambda: ["0", "1.0"], description="generalist ratios to try, RATIO[:no-facts], comma-separated"
    )
    generalist_policy: Literal["explicit", "auto"] = Field(
        "explicit", description=f"'auto' tries {','.join(AUTO_CANDIDATES)} (ignores --candidates)"
    )
    selection_instances: int = Field(
        50,
        ge=1,
        le=10_000,
        description="instances per task, kept out of training, on which candidates are compared (several candidates only)",
    )
    policy: Path | None = Field(
        None, description="gate policy YAML (default: must beat the base model, the majority label and the champion)"
    )
    champion: Path | None = Field(None, description="current champion adapter to beat")

    @field_validator("candidates", mode="before")
    @classmethod
    def _split(cls, value):
        items = [value] if isinstance(value, str) else list(value)
        return [part.strip() for item in items for part in str(item).split(",") if part.strip()]

    def specs(self) -> list[GeneralistSpec]:
        return parse_specs(AUTO_CANDIDATES if self.generalist_policy == "auto" else self.candidates)


def generalist_candidates(generalist: str | float | int, *, as_count: bool = False, examples: int = 1) -> list[str]:
    """The candidates (`RATIO[:FILTER]`) a generalist choice stands for: "auto" (decide by evidence), "none", a
    ratio, or (`as_count`) a number of generalist records, turned into a ratio of the specialist examples."""
    if generalist == "auto":
        return list(AUTO_CANDIDATES)
    if generalist == "none":
        return ["0"]
    if as_count:
        return [f"{float(generalist) / max(1, examples):g}"]
    return [f"{float(generalist):g}"]


def selection_size(candidates: int, requested: int) -> int:
    """Instances per task kept out of training to choose between candidates: none when there is one candidate."""
    return requested if candidates > 1 else 0


class BuildConfig(BuildSettings, TrainConfig):
    """`specialist build`: train flags plus candidates and gate."""

    @model_validator(mode="after")
    def _candidates_decide(self):
        # Each candidate sets these itself: a value given for them would be silently replaced, so it is refused.
        given = sorted(self.model_fields_set & {"generalist_ratio", "generalist_count", "generalist_filter"})
        if given:
            raise ValueError(f"{given[0]} is set per candidate: use candidates (e.g. 0,1.0,1.0:no-facts)")
        return self


def _split(value) -> list[str]:
    items = [value] if isinstance(value, (str, int, float)) else list(value)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


class GridSettings(StrictModel):
    """The grid."""

    instances_per_task: list[int] = Field(
        default_factory=lambda: [8, 32, 128], description="instances per task, comma-separated"
    )
    generalist_ratios: list[str] = Field(
        default_factory=lambda: ["0", "1"],
        description="generalist settings RATIO[:no-facts], comma-separated (0 = specialist only)",
    )
    seeds: list[int] = Field(
        default_factory=lambda: [1, 2, 3], description="seeds, comma-separated (intervals need several)"
    )
    eval_instances: int = Field(
        HELD_OUT_INSTANCES,
        ge=1,
        le=HELD_OUT_INSTANCES,
        description="score on the first N held-out instances of each task",
    )
    confidence: float = Field(0.95, gt=0, lt=1, description="confidence of the reported intervals")

    @field_validator("instances_per_task", "generalist_ratios", "seeds", mode="before")
    @classmethod
    def _comma_lists(cls, value):
        return _split(value)


class ExperimentConfig(GridSettings, TrainConfig):
    """`specialist experiment`: the grid plus the train flags shared by every cell."""

    @model_validator(mode="after")
    def _grid_decides(self):
        # The grid sets these per cell: a value given for them would be silently replaced, so it is refused.
        owned = {
            "generalist_ratio": "generalist_ratios",
            "generalist_count": "generalist_ratios",
            "seed": "seeds",
            "generalist_filter": "generalist_ratios (e.g. 1:no-facts)",
            "selection_instances": "nothing (no selection here)",
        }
        given = sorted(self.model_fields_set & set(owned))
        if given:
            raise ValueError(f"{given[0]} is set per cell by the grid: use {owned[given[0]]}")
        return self


def build_config_for_job(
    *,
    candidates: list[str],
    max_steps: int | None,
    epochs: float | None,
    lora: dict[str, float | int | None],
    **options,
) -> BuildConfig:
    """The recipe's options for a specialist job: its candidates, its length (steps, else epochs, default 2) and
    the LoRA settings it overrides (`rank`, `alpha`, `dropout`, `learning_rate`; None keeps the default); every
    other option passes through as a BuildConfig field."""
    length = {"max_steps": max_steps} if max_steps else {"epochs": epochs or 2}
    names = {"rank": "lora_rank", "alpha": "lora_alpha", "dropout": "lora_dropout", "learning_rate": "learning_rate"}
    overrides = {names[k]: v for k, v in lora.items() if v is not None}
    return BuildConfig(candidates=candidates, progress=False, **length, **overrides, **options)
