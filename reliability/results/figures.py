"""All the figures of one `python -m reliability` run: what is written as JSON (docs/results/reliability.json),
what the report is rendered from, and the loader that rebuilds them from that JSON."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ConfigDict, Field

from reliability.results.bad_input import BadInputLiveResult, QuickResult, SecurityLiveResult
from reliability.results.base import Goal, Result, ScenarioError
from reliability.results.combined import bad_input_goals, security_goals
from reliability.results.faults import FaultsResults
from reliability.results.load import LoadResult, ShutdownResult, SoakResult


class RunArgs(Result):
    """The options of the run, as the report shows them (paths and part selection left out)."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    clients: int
    load_seconds: int | float  # int | float: a default stays 60 in the JSON, a --load-seconds 10 stays 10.0
    warmup_seconds: int | float
    fault_seconds: int | float
    fault_clients: int
    soak_seconds: int | float
    soak_clients: int
    max_new_tokens: int
    fuzz_examples: int
    fingerprint_inputs: int
    adapter_scale: int | float
    threads: int | None
    json_path: str = Field(alias="json")  # where the figures were written ("json" would shadow BaseModel.json)

    @property
    def smoke(self) -> bool:
        """Shorter than the issue asks for (32 clients x 60 s of load, a 10-minute soak)."""
        return self.load_seconds < 60 or self.soak_seconds < 600 or self.clients < 32


class Setup(Result):
    tasks: dict[str, str]  # served name -> SuperNI task
    serve_args: list[str]
    start_s: float | ScenarioError
    fingerprint_prompts: int
    distinguishable: int
    base_model: str


class Figures(Result):
    """One run; a part that did not run is None (and absent from the JSON)."""

    args: RunArgs
    started_at: str
    machine: str
    parts: list[str]
    quick: QuickResult | ScenarioError | None = None
    setup: Setup | None = None
    bad_input_live: BadInputLiveResult | ScenarioError | None = None
    security_live: SecurityLiveResult | ScenarioError | None = None
    load: LoadResult | ScenarioError | None = None
    faults: FaultsResults | None = None
    soak: SoakResult | ScenarioError | None = None
    shutdown: ShutdownResult | ScenarioError | None = None
    finished_at: str | None = None

    def goals(self) -> list[Goal]:
        """Every goal of the issue that this run measured, in the report's order."""
        rows = bad_input_goals(self.quick, self.bad_input_live)
        rows += _goals(self.load, "load", "load")
        rows += self.faults.goals() if self.faults is not None else []
        rows += security_goals(self.quick, self.security_live)
        rows += _goals(self.soak, "soak", "soak")
        rows += _goals(self.shutdown, "shutdown", "soak")
        return rows

    def to_json(self) -> dict:
        """The JSON of figures: the parts that ran (exclude_unset), every figure of each."""
        return self.model_dump(exclude_unset=True)


def _goals(result, scenario: str, area: str) -> list[Goal]:
    if result is None:
        return []
    return result.goals(scenario, area) if isinstance(result, ScenarioError) else result.goals()


def load_figures(path: Path) -> Figures:
    """The typed figures of a stored run (e.g. docs/results/reliability.json)."""
    return Figures.model_validate(json.loads(Path(path).read_text()))
