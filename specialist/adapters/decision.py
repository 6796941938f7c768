"""The gate decision: the artifact the gate (`eval.gate`) writes beside an adapter and the registry requires.

This module owns its schema, its file name and the names of the models a decision scores, so the writer and
every reader agree without reading each other's dicts by string keys.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, computed_field

from specialist.adapters.manifest import DECISION_NAME
from specialist.errors import SpecialistError

# How models are named in evaluation results and decisions. BASE is the bare base model in every stage's results.
BASE, MAJORITY, CANDIDATE, CHAMPION = "base", "majority", "candidate", "champion"
DEFAULT_CONFIDENCE = 0.9  # of the gate and of evaluation reports (the experiment reports 95%)


class Check(BaseModel):
    name: str
    passed: bool
    value: float | None = Field(None, description="the observed statistic: a mean score, or a gain in points")
    threshold: float | None = None
    ci_low: float | None = Field(None, description="lower bound of the bootstrap interval of `value`")
    ci_high: float | None = None
    instances: int | None = Field(None, description="evaluation instances per task behind the interval")
    undecided: bool = Field(False, description="the interval straddles the threshold: more instances are needed")
    detail: str = ""


class GateDecision(BaseModel):
    candidate: str
    adapter_sha256: str | None
    base_model: dict[str, str]
    champion: str | None
    passed: bool
    checks: list[Check]
    scores: dict[str, dict[str, dict[str, float]]] = Field(
        description=f"model -> task -> metrics; models: {CANDIDATE}, {BASE}, {CHAMPION}, {MAJORITY} (label tasks)"
    )
    policy: dict
    stop_rule: dict = Field(default_factory=dict, description="how every model's generations were ended")
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @computed_field
    @property
    def confidence(self) -> float:
        """Of every interval in the checks (the policy's)."""
        return self.policy.get("confidence", DEFAULT_CONFIDENCE)

    @property
    def candidate_scores(self) -> dict[str, dict[str, float]]:
        """task -> metrics of the model the decision is about."""
        return self.scores.get(CANDIDATE, {})

    @property
    def base_sha256(self) -> str | None:
        return self.base_model.get("content_sha256")

    def summary(self) -> str:
        """One line: PASS, or why not (an undecided check says so)."""
        if self.passed:
            return "PASS"
        undecided = [c.name for c in self.failures() if c.undecided]
        failed = [c.name for c in self.failures() if not c.undecided]
        parts = ([f"failed: {', '.join(failed)}"] if failed else []) + (
            [f"cannot decide: {', '.join(undecided)}"] if undecided else []
        )
        return "FAIL (" + "; ".join(parts) + ")"


def save_decision(adapter_dir: Path, decision: GateDecision) -> Path:
    """Write atomically beside the adapter (a reader never sees half a decision)."""
    path = Path(adapter_dir) / DECISION_NAME
    if not Path(adapter_dir).is_dir():
        return path
    tmp = path.with_suffix(".tmp")
    tmp.write_text(decision.model_dump_json(indent=2) + "\n")
    tmp.replace(path)
    return path


def read_decision(adapter_dir: Path) -> GateDecision | None:
    """The adapter's decision, or None when it has none; an unreadable one is an error naming the fix."""
    path = Path(adapter_dir) / DECISION_NAME
    if not path.is_file():
        return None
    try:
        return GateDecision.model_validate_json(path.read_text())
    except (ValidationError, ValueError, UnicodeDecodeError):
        raise SpecialistError(f"{path} is not a valid gate decision", "re-run `specialist gate`") from None
