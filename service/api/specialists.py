"""Specialist requests (training jobs): upload data, request a specialist, follow or cancel its job. Every route
needs the admin token."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from service.http import ApiError, require_admin, storage_call
from service.jobs import DuplicateJob, RequestRejected, SpecialistRequest, save_upload, validate_request
from service.state import ServingDep
from specialist.errors import SpecialistError

UPLOADS = "/uploads"  # its body limit is max_upload_bytes, not max_body_bytes (see create_app)
router = APIRouter(dependencies=[Depends(require_admin)])


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
async def get_job(job_id: str, state: ServingDep):
    job = await storage_call("job store", state.jobs.get, job_id) if _is_job_id(job_id) else None
    if job is None:
        raise ApiError(404, f"no job {job_id!r}", "not_found")
    return job


@router.delete("/specialists/{job_id}")
async def cancel_job(job_id: str, state: ServingDep):
    status = await storage_call("job store", state.jobs.request_cancel, job_id) if _is_job_id(job_id) else None
    if status is None:
        raise ApiError(404, f"no job {job_id!r}", "not_found")
    return {"job_id": job_id, "status": status}


def _is_job_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


def _jobs_call(fn):
    try:
        return fn()
    except RequestRejected as e:
        raise ApiError(e.status, str(e)) from None
    except SpecialistError as e:
        raise ApiError(422, str(e)) from None
