"""Specialist requests as tracked background jobs: `schema` (the request and the job), `store` (the job table),
`executor` (what runs jobs: `LocalExecutor`, one process per job), `runner` (one job's process), `data` (uploads
and inline data)."""

from service.jobs.data import save_upload
from service.jobs.executor import Executor, LocalExecutor
from service.jobs.schema import (
    FINAL,
    RUNNING,
    DuplicateJob,
    Job,
    JobSummary,
    RequestRejected,
    SpecialistRequest,
    Stage,
    validate_request,
)
from service.jobs.store import JobStore

__all__ = [
    "FINAL",
    "RUNNING",
    "DuplicateJob",
    "Executor",
    "Job",
    "JobStore",
    "JobSummary",
    "LocalExecutor",
    "RequestRejected",
    "SpecialistRequest",
    "Stage",
    "save_upload",
    "validate_request",
]
