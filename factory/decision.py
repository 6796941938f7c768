"""What `specialist build` decides, as a typed artifact: returned by the recipe, written to `<out>/decision.json`,
and read (typed) by the CLI, the job runner and the API client."""

from __future__ import annotations

from pydantic import BaseModel, Field, computed_field

from eval.intervals import Interval
from specialist.adapters.decision import GateDecision
from specialist.prompt_format import stop_rule

SELECTION_RULE = (
    "the last N answered instances of each task's training pool (after the held-out set); no candidate trains on them"
)


class CandidateResult(BaseModel):
    name: str
    generalist_ratio: float
    generalist_filter: str
    generalist_examples: int
    adapter: str
    problems: list[str] = Field(default_factory=list, description="why it cannot be served (then it is not chosen)")
    selection_score: Interval | None = Field(None, description="mean primary score on the selection set")
    versus_best: Interval | None = Field(
        None, description="this - the best-scoring candidate on the selection set, paired"
    )


class SelectionSet(BaseModel):
    rule: str = SELECTION_RULE
    instances_per_task: int
    instance_ids: dict[str, list[str]] = Field(description="task -> the selection instances' ids")


class BuildDecision(BaseModel):
    """What `build` returns and writes to `<out>/decision.json`; jobs and clients read it typed."""

    tasks: list[str]
    base_model: str
    candidates: list[CandidateResult]
    selection: SelectionSet | None = Field(None, description="None with a single candidate: there is nothing to choose")
    selected: str | None = Field(None, description="the candidate chosen on the selection set")
    gate: GateDecision | None = Field(None, description="the selected candidate's gate decision on the held-out set")
    reason: str
    stop_rule: dict = Field(default_factory=stop_rule)

    @computed_field
    @property
    def chosen(self) -> str | None:
        """The selected candidate if it passed the gate: the one that may be registered."""
        return self.selected if self.gate is not None and self.gate.passed else None

    @computed_field
    @property
    def chosen_adapter(self) -> str | None:
        return next((c.adapter for c in self.candidates if c.name == self.chosen), None)
