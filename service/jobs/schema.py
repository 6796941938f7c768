"""What a specialist request is and when it is accepted: the request body, the job's states and record, the checks.

    POST /specialists {"task": "sst2", "superni_task": "task363_sst2_polarity_classification",
                       "instances_per_task": 16, "generalist": "auto", "budget": {"max_steps": 200}}

Stages: queued -> preparing -> training -> evaluating -> gating -> promoted | rejected | failed | canceled.
The rest of the package: `store` keeps the jobs, `executor` runs them, `runner` is one job's process, `data`
stores uploads and turns inline data into a task file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from eval.benchmarks import GateMetric, Metric
from service.config import ServeConfig, TextBody
from specialist.errors import SpecialistError
from specialist.paths import validate_name

if TYPE_CHECKING:
    from eval.gate import GatePolicy

Stage = Literal["queued", "preparing", "training", "evaluating", "gating", "promoted", "rejected", "failed", "canceled"]
FINAL: tuple[str, ...] = ("promoted", "rejected", "failed", "canceled")
RUNNING: tuple[str, ...] = ("preparing", "training", "evaluating", "gating")
# Metadata a requester attaches to a job (OpenAI's limits for fine-tuning jobs' metadata).
METADATA_KEYS, METADATA_KEY_CHARS, METADATA_VALUE_CHARS = 16, 64, 512


# -- the request ---------------------------------------------------------------------------------------------


class _Body(TextBody):  # finite numbers and valid Unicode, as every request body
    model_config = ConfigDict(extra="forbid")


class InlineInstance(_Body):
    input: str = Field(max_length=20_000)
    output: str | None = Field(None, max_length=20_000)
    outputs: list[str] | None = Field(None, min_length=1, max_length=16)

    @model_validator(mode="after")
    def _one_answer(self):
        if (self.output is None) == (self.outputs is None):
            raise ValueError("give output or outputs")
        return self

    def references(self) -> list[str]:
        return self.outputs if self.outputs is not None else [self.output]


class InlineExample(_Body):
    input: str = Field(max_length=20_000)
    output: str = Field(max_length=20_000)


class Ratio(_Body):
    ratio: float = Field(ge=0, le=100)


class Count(_Body):
    count: int = Field(ge=0, le=1_000_000)


class Budget(_Body):
    max_steps: int | None = Field(None, ge=1, le=100_000)
    epochs: float | None = Field(None, gt=0, le=100)
    max_wall_seconds: float | None = Field(None, ge=10, le=7 * 24 * 3600)

    @model_validator(mode="after")
    def _one_length(self):
        if self.max_steps is not None and self.epochs is not None:
            raise ValueError("give max_steps or epochs, not both")
        return self


class LoraOverrides(_Body):
    rank: int | None = Field(None, ge=1, le=256)
    alpha: float | None = Field(None, gt=0, le=1024)
    dropout: float | None = Field(None, ge=0, lt=1)
    learning_rate: float | None = Field(None, gt=0, le=1)


class GateOverrides(_Body):
    """May only tighten the operator's policy (checked when the job is accepted)."""

    min_score: dict[GateMetric, float] = Field(default_factory=dict)
    min_gain_over_base: float | None = Field(None, ge=-100, le=100)
    min_gain_over_majority: float | None = Field(None, ge=-100, le=100)
    min_gain_over_champion: float | None = Field(None, ge=-100, le=100)
    eval_instances: int | None = Field(None, ge=1, le=1000)
    confidence: float | None = Field(None, gt=0, lt=1, description="may only be raised")


class SpecialistRequest(_Body):
    task: str = Field(description="the name it will be served under")
    superni_task: str | None = Field(None, description="a task file in the server's task-data directory")
    instances: list[InlineInstance] | None = Field(None, max_length=100_000)
    definition: str | None = Field(None, max_length=20_000)
    positive_examples: list[InlineExample] = Field(default_factory=list, max_length=8)
    upload_id: str | None = Field(None, pattern=r"^[0-9a-f]{32}$")
    eval_instances: list[InlineInstance] | None = Field(
        None, max_length=10_000, description="a separate evaluation set"
    )
    held_out: int = Field(100, ge=1, le=10_000, description="evaluation instances taken from the provided data")
    selection_instances: int = Field(
        50,
        ge=1,
        le=10_000,
        description="instances kept out of training to choose between candidates (with several candidates)",
    )
    metric: Metric | None = None
    instances_per_task: int | Literal["all"] = 64
    generalist: Literal["auto", "none"] | Ratio | Count = "auto"
    budget: Budget = Field(default_factory=Budget)
    lora: LoraOverrides = Field(default_factory=LoraOverrides)
    gate: GateOverrides = Field(default_factory=GateOverrides)
    metadata: dict[str, str] = Field(
        default_factory=dict,
        description=f"the requester's own labels, returned with the job: at most {METADATA_KEYS} keys of "
        f"1-{METADATA_KEY_CHARS} characters, values of at most {METADATA_VALUE_CHARS}",
    )

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > METADATA_KEYS:
            raise ValueError(f"at most {METADATA_KEYS} keys, got {len(value)}")
        for key, text in value.items():
            if not 1 <= len(key) <= METADATA_KEY_CHARS:
                shown = repr(key[:METADATA_KEY_CHARS]) + ("..." if len(key) > METADATA_KEY_CHARS else "")
                raise ValueError(f"keys have 1 to {METADATA_KEY_CHARS} characters, not {len(key)} ({shown})")
            if len(text) > METADATA_VALUE_CHARS:
                raise ValueError(f"the value of {key!r} has {len(text)} characters, at most {METADATA_VALUE_CHARS}")
        return value

    @model_validator(mode="after")
    def _one_source(self):
        try:
            validate_name(self.task, "task name")
        except SpecialistError as e:
            raise ValueError(str(e)) from None
        sources = [self.superni_task is not None, self.instances is not None, self.upload_id is not None]
        if sum(sources) != 1:
            raise ValueError("give exactly one of superni_task, instances or upload_id")
        if (self.instances is not None or self.upload_id is not None) and not self.definition:
            raise ValueError("inline or uploaded instances need a definition")
        if isinstance(self.instances_per_task, int) and self.instances_per_task < 1:
            raise ValueError("instances_per_task must be >= 1 or 'all'")
        return self


# -- the job, as the API shows it ----------------------------------------------------------------------------------


ErrorCode = Literal[
    "invalid_data",  # the data could not be made into a task or a training mixture
    "training_failed",
    "evaluation_failed",  # scoring the candidates or gating the chosen one
    "gate_rejected",  # no candidate passed the gate: nothing was promoted (status rejected)
    "canceled",
    "wall_time_exceeded",  # the request's budget.max_wall_seconds
    "process_exited",  # the job's process kept ending without an outcome (killed, out of memory): retries used up
    "interrupted",  # the service kept restarting while the job ran: retries used up
    "internal",  # a bug: the job log has the traceback
]


class JobError(BaseModel):
    """Why a job ended without promoting: `code` for programs, `message` for people."""

    code: ErrorCode
    message: str


CANCELED = JobError(code="canceled", message="canceled by request; nothing was promoted")


class JobSummary(BaseModel):
    """One job in GET /specialists (the field order is the API's)."""

    job_id: str
    task: str
    status: Stage
    progress: dict[str, Any] = Field(description="the latest progress event: stage, and per stage its numbers")
    error: JobError | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    metadata: dict[str, str] = Field(description="as the request sent it")
    trained_tokens: int | None = Field(
        description="tokens processed in training, summed over the candidates (None until all are trained)"
    )
    attempts: int = Field(
        description="times the job's process was started: more than 1 when it died and resumed from a checkpoint"
    )


class Job(JobSummary):
    """GET /specialists/{id}: the summary plus the outcome and the request. Both stay JSON as stored, so a job
    accepted by an earlier version is still shown as it was accepted."""

    result: dict[str, Any] = Field(
        description="{decision: a BuildDecision, route: {task, version, adapter} once promoted}"
    )
    request: dict[str, Any]


EventLevel = Literal["info", "warn", "error"]
EventType = Literal["message", "metrics"]


class JobEvent(BaseModel):
    """One entry of GET /specialists/{id}/events: a stage change, a candidate, a checkpoint, a training
    sample (type metrics), an evaluation result or the decision. Ids increase: `after` the last one seen."""

    id: int
    created_at: str
    level: EventLevel
    type: EventType
    message: str
    data: dict[str, Any]


class EventPage(BaseModel):
    data: list[JobEvent] = Field(description="oldest first")
    has_more: bool = Field(description="more events follow the last one here: ask again with after=its id")


class Checkpoint(BaseModel):
    """A checkpoint training wrote: a resumable `step-N` one (optimizer state; the run removes its work dir,
    and these, once the candidate's adapter is written) or the candidate's finished adapter."""

    step: int
    train_loss: float | None
    validation_loss: float | None = Field(None, description="None: training measures no validation loss")
    path: str
    candidate: str
    kind: Literal["resumable", "adapter"]
    created_at: str


class CheckpointList(BaseModel):
    data: list[Checkpoint] = Field(description="in the order training wrote them")


class DuplicateJob(Exception):
    def __init__(self, task: str, job_id: str):
        super().__init__(f"a job for task {task!r} is already queued or running ({job_id})")
        self.job_id = job_id


# -- accepting a request ---------------------------------------------------------------------------------------


NO_EVALUATION = "no evaluation instances: send more instances, lower held_out or give eval_instances"


class RequestRejected(Exception):
    """A request that must not be queued: `status` is the HTTP code, the message says why and how to fix it."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def candidate_settings(request: SpecialistRequest, pool_size: int) -> list[str]:
    """The generalist settings (`RATIO[:FILTER]`) a request's job trains as candidates (the recipe's rule)."""
    from factory.config import generalist_candidates

    generalist = request.generalist
    if isinstance(generalist, Ratio):
        return generalist_candidates(generalist.ratio)
    if isinstance(generalist, Count):
        examples = pool_size if request.instances_per_task == "all" else request.instances_per_task
        return generalist_candidates(generalist.count, as_count=True, examples=examples)
    return generalist_candidates(generalist)


def validate_request(request: SpecialistRequest, config: ServeConfig, home: Path) -> None:
    """Everything checkable before queueing: the data exists and is large enough, the gate is only tightened."""
    from factory.config import selection_size
    from specialist.superni import load_task, resolve_task_file
    from specialist.tasks import training_pool

    wanted = request.instances_per_task
    if request.superni_task is not None:
        try:
            resolve_task_file(config.task_data, request.superni_task)
        except SpecialistError as e:
            raise RequestRejected(404, str(e)) from None
        task = load_task(config.task_data, request.superni_task)  # a malformed file: SpecialistError, a 422
    else:
        from service.jobs.data import inline_task  # here: data.py reads these models

        task = inline_task(request, home).as_task()
    if not task.evaluation:
        raise RequestRejected(422, NO_EVALUATION)
    held_out = task.evaluation
    _, trainable = training_pool(task)
    # Several candidates are compared on a selection set that none of them trains on (factory.build).
    selection = selection_size(len(candidate_settings(request, len(trainable))), request.selection_instances)
    left = len(trainable) - selection
    if left < 1 or (wanted != "all" and wanted > left):
        reserved = f" and {selection} kept to choose between candidates (selection_instances)" if selection else ""
        raise RequestRejected(
            422,
            f"too few instances: {max(0, left)} left for training after {len(held_out)} held out{reserved}, {wanted} requested; "
            "send more instances or ask for fewer" + (", or lower selection_instances" if selection else ""),
        )
    job_policy(request, config)  # raises if the overrides loosen the operator's policy


def job_policy(request: SpecialistRequest, config: ServeConfig) -> GatePolicy:
    """The operator's gate policy, tightened by the request's overrides (never loosened)."""
    from eval.gate import load_policy

    base = load_policy(config.job_gate_policy)
    o = request.gate
    updates: dict = {}
    for metric, value in o.min_score.items():
        if value < base.min_score.get(metric, 0):
            raise RequestRejected(
                422, f"gate.min_score.{metric}={value} is below the operator's {base.min_score[metric]}"
            )
        updates.setdefault("min_score", dict(base.min_score))[metric] = value
    for name in ("min_gain_over_base", "min_gain_over_majority", "min_gain_over_champion", "confidence"):
        value, floor = getattr(o, name), getattr(base, name)
        if value is not None:
            if floor is not None and value < floor:
                raise RequestRejected(422, f"gate.{name}={value} is below the operator's {floor}")
            updates[name] = value
    if o.eval_instances is not None:
        if base.eval_instances is not None and o.eval_instances < base.eval_instances:
            raise RequestRejected(
                422, f"gate.eval_instances={o.eval_instances} is below the operator's {base.eval_instances}"
            )
        updates["eval_instances"] = o.eval_instances
    return base.model_copy(update=updates)
