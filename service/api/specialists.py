"""Specialist requests (training jobs): upload data, request a specialist, follow it (the job, its events and
checkpoints, as fine-tuning APIs show them) or cancel it. Every route needs the admin token."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from service.http import ApiError, require_request, storage_call
from service.jobs import DuplicateJob, RequestRejected, SpecialistRequest, save_upload, validate_request
from service.jobs.schema import CheckpointList, EventPage, Job
from service.state import ServingDep
from specialist.errors import SpecialistError

MAX_EVENT_ID = 2**63 - 1  # SQLite's largest integer: a larger `after` would not bind
UPLOADS = "/uploads"  # its body limit is max_upload_bytes, not max_body_bytes (see create_app)
router = APIRouter(dependencies=[Depends(require_request)])


@router.post(UPLOADS, status_code=201)
async def upload(request: Request, state: ServingDep):
    data = await request.body()
    upload_id, count = await storage_call(
        "job store", _jobs_call, lambda: save_upload(state.jobs.root.parent, data, state.config.max_upload_bytes)
    )
    return {"upload_id": upload_id, "records": count}


@router.post("/specialists", status_code=202)
async def request_specialist(body: SpecialistRequest, state: ServingDep):
    await storage_call("job store", _jobs_call, lambda: validate_request(body, state.config, state.jobs.root.parent))
    try:
        job_id = await storage_call("job store", state.jobs.create, body)
    except DuplicateJob as e:
        raise ApiError(409, str(e), "conflict") from None
    return {"job_id": job_id, "status": "queued"}


@router.get("/specialists")
async def list_jobs(state: ServingDep):
    return {"jobs": await storage_call("job store", state.jobs.list)}


@router.get("/specialists/{job_id}")
async def get_job(job_id: str, state: ServingDep) -> Job:
    job = await storage_call("job store", state.jobs.get, job_id) if _is_job_id(job_id) else None
    return _found(job, job_id)


@router.get("/specialists/{job_id}/events")
async def job_events(
    job_id: str,
    state: ServingDep,
    after: int | None = Query(None, ge=0, le=MAX_EVENT_ID, description="the last event id seen (exclusive)"),
    limit: int = Query(100, ge=1, le=1000),
) -> EventPage:
    """The job's events, oldest first: every status change, candidate, checkpoint, training sample (type
    metrics), evaluation result and the decision."""
    page = await storage_call("job store", state.jobs.events, job_id, after, limit) if _is_job_id(job_id) else None
    return _found(page, job_id)


@router.get("/specialists/{job_id}/checkpoints")
async def job_checkpoints(job_id: str, state: ServingDep) -> CheckpointList:
    """The checkpoints the job's training wrote: resumable `step-N` ones and each candidate's adapter."""
    found = await storage_call("job store", state.jobs.checkpoints, job_id) if _is_job_id(job_id) else None
    return _found(found, job_id)


@router.delete("/specialists/{job_id}")
async def cancel_job(job_id: str, state: ServingDep):
    status = await storage_call("job store", state.jobs.request_cancel, job_id) if _is_job_id(job_id) else None
    if status is None:
        raise ApiError(404, f"no job {job_id!r}", "not_found")
    return {"job_id": job_id, "status": status}


def _found(record, job_id: str):
    if record is None:
        raise ApiError(404, f"no job {job_id!r}", "not_found")
    return record


def _is_job_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


def _jobs_call(fn):
    try:
        return fn()
    except RequestRejected as e:
        raise ApiError(e.status, str(e)) from None
    except SpecialistError as e:
        raise ApiError(422, str(e)) from None
