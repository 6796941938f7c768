"""What a job's process tells the job store while it runs: its status and progress (GET /specialists/{id}), and
the events and checkpoints the API lists (GET /specialists/{id}/events and /checkpoints).

Every status change is an event already (the store writes one with it); `JobRecorder` adds the rest: each
candidate's start and finish, each checkpoint, training samples, the evaluation results and the decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from factory.milestones import (
    CandidateGated,
    CandidatesScored,
    CandidateStarted,
    CandidateTrained,
    CheckpointSaved,
    Milestone,
)
from service.jobs.schema import ErrorCode, JobError
from service.jobs.store import JobStore

if TYPE_CHECKING:
    from factory.decision import BuildDecision

# A training sample is stored for a candidate's first and last step, and otherwise at most this often: a long
# run must not write an event per step (the job's progress still shows every step).
SAMPLE_SECONDS = 10.0


# A failure's code by the stage it happened in; while preparing it is the data's fault unless unexpected.
_FAILED_AT: dict[str, ErrorCode] = {
    "training": "training_failed",
    "evaluating": "evaluation_failed",
    "gating": "evaluation_failed",
}


class JobRecorder:
    def __init__(self, store: JobStore, job_id: str, clock: Callable[[], float] = time.monotonic):
        self.store, self.job_id, self.clock = store, job_id, clock
        self.stage = "preparing"  # the executor claimed the job: its process starts here
        self._sampled_at: dict[str, float] = {}  # candidate -> when its last sample was stored
        self._tokens: dict[str, int] = {}  # candidate -> tokens it trained on

    def _event(self, message: str, data: dict[str, Any], level="info", type="message") -> None:
        self.store.add_event(self.job_id, message, data, level=level, type=type)

    # -- the build's callbacks ---------------------------------------------------------------------------------

    def progress(self, stage: str, info: dict) -> None:
        """`build_specialist`'s on_event: the job's status and progress, and a training sample now and then."""
        if stage == "training":
            done = info["index"] + info["step"] / max(1, info["steps"])
            info = info | {"percent": round(100 * done / info["of"], 1)}
        self.stage = stage
        self.store.update(self.job_id, status=stage, progress={"stage": stage, **info})
        if stage == "training":
            self._sample(info)

    def _sample(self, info: dict) -> None:
        name, now = info["candidate"], self.clock()
        first, last = name not in self._sampled_at, info["step"] >= info["steps"]
        if not (first or last or now - self._sampled_at[name] >= SAMPLE_SECONDS):
            return
        self._sampled_at[name] = now
        keys = ("candidate", "step", "steps", "loss", "eta_seconds")
        self._event(
            f"{name} step {info['step']}/{info['steps']}: loss {info['loss']:.4f}",
            {k: info[k] for k in keys if k in info},
            type="metrics",
        )

    def milestone(self, m: Milestone) -> None:
        """`build_specialist`'s on_milestone."""
        if isinstance(m, CandidateStarted):
            self._event(
                f"candidate {m.candidate} ({m.index + 1}/{m.of}): generalist ratio {m.generalist_ratio:g}, "
                f"filter {m.generalist_filter}",
                {
                    "candidate": m.candidate,
                    "index": m.index,
                    "of": m.of,
                    "generalist_ratio": m.generalist_ratio,
                    "generalist_filter": m.generalist_filter,
                },
            )
        elif isinstance(m, CheckpointSaved):
            self.store.add_checkpoint(self.job_id, m.candidate, m.step, m.train_loss, m.path, "resumable")
            self._event(
                f"checkpoint of {m.candidate} at step {m.step}: loss {m.train_loss:.4f}",
                {"candidate": m.candidate, "step": m.step, "train_loss": m.train_loss, "path": str(m.path)},
            )
        elif isinstance(m, CandidateTrained):
            self._trained(m)
        elif isinstance(m, CandidatesScored):
            self._scored(m)
        elif isinstance(m, CandidateGated):
            gate = m.decision
            self._event(
                f"held-out gate on {m.candidate}: {gate.summary()}",
                {
                    "set": "held-out",
                    "candidate": m.candidate,
                    "passed": gate.passed,
                    "checks": [c.model_dump(mode="json") for c in gate.checks],
                },
                level="info" if gate.passed else "warn",
                type="metrics",
            )

    def _trained(self, m: CandidateTrained) -> None:
        t = m.training
        self.store.add_checkpoint(self.job_id, m.candidate, t.steps, t.final_loss, m.adapter, "adapter")
        loss = "" if t.final_loss is None else f", final loss {t.final_loss:.4f}"
        how = "reused (already trained with the same options)" if m.reused else "trained"
        self._event(
            f"candidate {m.candidate} {how}: {t.steps} steps, {t.tokens} tokens{loss}",
            {
                "candidate": m.candidate,
                "steps": t.steps,
                "tokens": t.tokens,
                "final_loss": t.final_loss,
                "wall_seconds": t.wall_seconds,
                "adapter": str(m.adapter),
                "reused": m.reused,
            },
        )
        self._tokens[m.candidate] = t.tokens
        if len(self._tokens) == m.of:  # every candidate is trained: the job's total is known
            self.store.update(self.job_id, trained_tokens=sum(self._tokens.values()))

    def _scored(self, m: CandidatesScored) -> None:
        shown = [
            f"{c.name} {c.selection_score}" if c.selection_score is not None else f"{c.name} unusable"
            for c in m.candidates
        ]
        self._event(
            f"selection set: {', '.join(shown)}; selected {m.selected or 'none'}",
            {
                "set": "selection",
                "scores": {
                    c.name: None if c.selection_score is None else c.selection_score.model_dump() for c in m.candidates
                },
                "problems": {c.name: c.problems for c in m.candidates if c.problems},
                "selected": m.selected,
                "reason": m.reason,
            },
            level="info" if m.selected else "warn",
            type="metrics",
        )

    # -- the outcome ------------------------------------------------------------------------------------------

    def decided(self, decision: BuildDecision) -> None:
        what = f"promote {decision.chosen}" if decision.chosen else "promote nothing"
        self._event(
            f"decision: {what}: {decision.reason}",
            {"chosen": decision.chosen, "selected": decision.selected, "reason": decision.reason},
            level="info" if decision.chosen else "warn",
        )

    def registered(self, route: dict[str, Any]) -> None:
        self._event(f"registered {route['task']} v{route['version']}: the service routes it now", route)

    def failed(self, error: Exception, expected: bool) -> JobError:
        """Fail the job; the code says at which stage and what kind of failure (`expected`: a SpecialistError
        or a refused request, whose message says what to fix)."""
        message = (
            str(error) if expected else f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        )
        code = _FAILED_AT.get(self.stage, "invalid_data" if expected else "internal")
        job_error = JobError(code=code, message=message)
        self.store.update(self.job_id, status="failed", error=job_error)
        return job_error
