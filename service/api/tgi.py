"""The TGI-compatible dialect: /generate, /generate_stream, / (TGI's compat route) and /info; the task is the
`adapter_id`, and a request without one is a 404, never a silent base-model answer."""

from __future__ import annotations

from fastapi import APIRouter

from service.backends import GenParams
from service.config import TGIRequest
from service.engine import Generation
from service.http import sse_response
from service.state import ServingDep, ServingState

router = APIRouter()


def _tgi(state: ServingState, body: TGIRequest) -> GenParams:
    p = body.parameters
    state.prepare(p.adapter_id, body.inputs)  # TGI itself would silently use the base model: we never do
    temperature = (p.temperature or 1.0) if (p.do_sample or p.temperature) else 0.0
    return state.params(p.max_new_tokens, temperature, p.top_p or 1.0, p.stop, p.seed)


@router.post("/generate")
async def generate(body: TGIRequest, state: ServingDep):
    params = _tgi(state, body)
    _, result = await state.run(body.parameters.adapter_id, body.inputs, params, "generate")
    response = {"generated_text": result.text}
    if body.parameters.details:
        response["details"] = _tgi_details(result)
    return response


@router.post("/")
async def tgi_compat(body: TGIRequest, state: ServingDep):
    """TGI's compat route, which huggingface_hub's InferenceClient(base_url=...) posts to."""
    if body.stream:
        return await generate_stream(body, state)
    return [await generate(body, state)]


@router.post("/generate_stream")
async def generate_stream(body: TGIRequest, state: ServingDep):
    params = _tgi(state, body)
    counter = iter(range(1, 1_000_000))

    def token(piece: str) -> dict:
        return {
            "index": next(counter),
            "token": {"id": 0, "text": piece, "logprob": 0.0, "special": False},
            "generated_text": None,
            "details": None,
        }

    def final(g: Generation) -> dict:
        return {
            "index": next(counter),
            "token": {"id": 0, "text": "", "logprob": 0.0, "special": True},
            "generated_text": g.text,
            "details": _tgi_details(g, stream=True),
        }

    return sse_response(
        state.stream(body.parameters.adapter_id, body.inputs, params, "generate_stream"),
        token,
        final,
        done_marker=False,
    )


@router.get("/info")
async def info(state: ServingDep):
    return {
        "model_id": state.base.id,
        "model_sha": state.base.content_sha256,
        "router": "specialist-factory",
        "max_input_tokens": state.config.max_input_tokens,
        "max_total_tokens": state.config.max_input_tokens + state.config.max_new_tokens_cap,
    }


def _tgi_details(g: Generation, stream: bool = False) -> dict:
    details = {
        "finish_reason": "length" if g.finish_reason == "length" else "eos_token",
        "generated_tokens": g.completion_tokens,
        "seed": None,
    }
    if not stream:
        details |= {"prefill": [], "tokens": []}
    return details
