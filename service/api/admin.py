"""Registry admin: promote a version, roll back, re-read the registry. Every route needs the admin token."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from service.config import PromoteRequest, TaskRequest
from service.http import ApiError, require_admin, storage_call
from service.state import ServingDep, ServingState
from specialist.errors import SpecialistError

router = APIRouter(dependencies=[Depends(require_admin)])


@router.post("/admin/promote")
async def promote(body: PromoteRequest, state: ServingDep):
    try:
        await storage_call("registry", state.registry.promote, body.task, body.version, actor="api")
    except SpecialistError as e:
        raise ApiError(404 if "no version" in e.problem else 400, str(e)) from None
    await storage_call("registry", state.router.sync)  # loading may wait for a batch: keep the event loop free
    return _route_report(state, body.task)


@router.post("/admin/rollback")
async def rollback(body: TaskRequest, state: ServingDep):
    try:
        await storage_call("registry", state.registry.rollback, body.task, actor="api")
    except SpecialistError as e:
        raise ApiError(400, str(e)) from None
    await storage_call("registry", state.router.sync)  # loading may wait for a batch: keep the event loop free
    return _route_report(state, body.task)


@router.post("/admin/reload")
async def reload(state: ServingDep):
    changed = await storage_call("registry", state.router.sync)
    return {"changed": changed, "tasks": sorted(state.router.routes), "refused": dict(state.router.errors)}


def _route_report(state: ServingState, task: str) -> dict:
    served = state.router.routes.get(task)
    return {
        "task": task,
        "serving_version": served.version if served else None,
        "refused": state.router.errors.get(task),
    }
