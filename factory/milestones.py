"""What a build reports besides its progress: each candidate's start and finish, each checkpoint, the
selection-set scores and the gate's decision, as typed records (`build_specialist(..., on_milestone=...)`).

The job runner turns them into a job's events and checkpoints; `specialist build` ignores them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from factory.decision import CandidateResult
from specialist.adapters import TrainingRecord
from specialist.adapters.decision import GateDecision


@dataclass(frozen=True)
class CandidateStarted:
    candidate: str
    index: int
    of: int
    generalist_ratio: float
    generalist_filter: str


@dataclass(frozen=True)
class CheckpointSaved:
    """A resumable `step-N` checkpoint, complete on disk (the loop keeps the last two; the run's work dir,
    with them, is removed once the candidate's adapter is written)."""

    candidate: str
    step: int
    train_loss: float
    path: Path


@dataclass(frozen=True)
class CandidateTrained:
    candidate: str
    index: int
    of: int
    adapter: Path
    training: TrainingRecord  # from its manifest: steps, tokens, losses
    reused: bool  # an adapter with the same options was already there: nothing was trained now


@dataclass(frozen=True)
class CandidatesScored:
    """The selection set's verdict: every candidate's score (or problems) and the one chosen to be gated."""

    candidates: list[CandidateResult]
    selected: str | None
    reason: str


@dataclass(frozen=True)
class CandidateGated:
    candidate: str
    decision: GateDecision  # its `candidate` is the adapter's path


Milestone = CandidateStarted | CheckpointSaved | CandidateTrained | CandidatesScored | CandidateGated
OnMilestone = Callable[[Milestone], None]
