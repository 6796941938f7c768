"""The native dialect: /predict (task + input -> output) and /tasks (what is served)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from service.config import Parameters, PredictRequest
from service.http import require_inference
from service.state import ServingDep

router = APIRouter(dependencies=[Depends(require_inference)])


@router.post("/predict")
async def predict(body: PredictRequest, state: ServingDep):
    p: Parameters = body.parameters
    params = state.params(p.max_new_tokens, p.temperature, p.top_p, p.stop, p.seed)
    served, result = await state.run(body.task, body.input, params, "predict")
    return {
        "task": served.task,
        "output": result.text.strip(),
        "adapter_version": served.version,
        "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens},
        "finish_reason": result.finish_reason,
    }


@router.get("/tasks")
async def tasks(state: ServingDep):
    return {
        "base_model": state.base.id,
        "tasks": [
            {"task": s.task, "version": s.version, "base_model": s.base_model, "scores": s.scores}
            for s in sorted(state.router.routes.values(), key=lambda s: s.task)
        ],
        "refused": dict(state.router.errors),
        "registry_version": state.router.registry_version,
    }
