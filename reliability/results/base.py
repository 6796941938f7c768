"""What every scenario result shares: a frozen model, the goal rows it judges itself by, and the stand-in for
a scenario that raised."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator


class Result(BaseModel):
    """A scenario's measured figures, frozen; dumped as the JSON of figures and rebuilt from it.

    Judgements kept in the JSON for its readers (`passed`) are computed fields: recomputed from the figures
    when a stored JSON is loaded, never read back."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _drop_computed(cls, data):
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in cls.model_computed_fields}
        return data


class Goal(BaseModel):
    """One row of the report: a goal of the issue, what was measured for it, and whether it was met."""

    model_config = ConfigDict(frozen=True)

    id: str
    area: str
    goal: str
    measured: str
    met: bool | None  # None: the scenario could not measure it here


class ScenarioError(Result):
    """A scenario that raised: its error stands in for its figures (the other scenarios still ran)."""

    error: str

    def goals(self, scenario: str, area: str) -> list[Goal]:
        """One unmet goal: what was measured is the error."""
        name = scenario.replace("_", " ")
        return [Goal(id=f"{scenario}-ran", area=area, goal=f"{name} runs to the end", measured=self.error, met=False)]


class TrafficSummary(Result):
    """Counts, latency percentiles and throughput of one `Traffic` run."""

    requests: int
    ok: int
    http_errors: int
    http_errors_by_status: dict[str, int]
    http_error_examples: list[str]
    transport_errors: int
    transport_errors_by_type: dict[str, int]
    wrong_adapter: int
    drift: int
    judged: int
    p50_s: float | None
    p90_s: float | None
    p99_s: float | None
    max_s: float | None
    mean_s: float | None
    requests_per_s: float
    tokens_per_s: float
    wall_s: float
