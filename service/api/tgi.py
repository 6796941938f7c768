"""The TGI-compatible dialect: /generate, /generate_stream, / (TGI's compat route) and /info; the task is the
`adapter_id`, and a request without one is a 404, never a silent base-model answer."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from service.backends import GenParams
from service.config import TGIRequest
from service.generation import GeneratedToken, Generation, TextPiece
from service.http import ApiError, error_body, require_inference, sse
from service.state import ServingDep, ServingState

router = APIRouter(dependencies=[Depends(require_inference)])


def _tgi(state: ServingState, body: TGIRequest) -> GenParams:
    p = body.parameters
    if p.truncate:  # the task input, before the prompt is rendered around it
        body.inputs = state.backend.keep_last_tokens(body.inputs, p.truncate)
    state.prepare(p.adapter_id, body.inputs)  # TGI itself would silently use the base model: we never do
    temperature = (p.temperature or 1.0) if (p.do_sample or p.temperature) else 0.0
    return state.params(
        p.max_new_tokens,
        temperature,
        p.top_p or 1.0,
        p.stop,
        p.seed,
        top_k=p.top_k or 0,
        typical_p=p.typical_p or 1.0,
        prompt_logprobs=bool(p.decoder_input_details),
        repetition_penalty=p.repetition_penalty or 1.0,
        frequency_penalty=p.frequency_penalty or 0.0,
        top_logprobs=p.top_n_tokens or 0,
        grammar=p.grammar.spec() if p.grammar else None,
        grammar_param="parameters.grammar",
    )


def _text(body: TGIRequest, generated: str) -> str:
    return body.inputs + generated if body.parameters.return_full_text else generated


@router.post("/generate")
async def generate(body: TGIRequest, state: ServingDep):
    params = _tgi(state, body)
    _, result = await state.run(body.parameters.adapter_id, body.inputs, params, "generate")
    response = {"generated_text": _text(body, result.text)}
    if body.parameters.details:
        prefill = [{"id": t.id, "text": t.text, "logprob": t.logprob} for t in result.prefill]
        response["details"] = _details(result) | {"prefill": prefill, "tokens": [_token(t) for t in result.tokens]}
        if body.parameters.top_n_tokens:
            response["details"]["top_tokens"] = [[_token(x) for x in t.top] for t in result.tokens]
    return response


@router.post("/")
async def tgi_compat(body: TGIRequest, state: ServingDep):
    """TGI's compat route, which huggingface_hub's InferenceClient(base_url=...) posts to."""
    if body.stream:
        return await generate_stream(body, state)
    return [await generate(body, state)]


@router.post("/tgi/{task}")
async def tgi_for_task(task: str, body: TGIRequest, state: ServingDep):
    """A TGI base URL per task, for clients that cannot name an adapter (the `text-generation` client posts
    every request, streamed or not, to its base URL): `Client("http://host:3000/tgi/<task>")`."""
    given = body.parameters.adapter_id
    if given is not None and given != task:
        raise ApiError(422, f"parameters.adapter_id: {given!r} differs from the task in the URL ({task!r})")
    body.parameters.adapter_id = task
    return await tgi_compat(body, state)


@router.post("/generate_stream")
async def generate_stream(body: TGIRequest, state: ServingDep):
    params = _tgi(state, body)
    return StreamingResponse(
        _token_events(body, state.stream(body.parameters.adapter_id, body.inputs, params, "generate_stream")),
        media_type="text/event-stream",
    )


async def _token_events(body: TGIRequest, items: AsyncIterator[TextPiece | Generation]):
    """One event per released piece, each with the real token that released it; as in TGI, the last event
    carries generated_text and details (no extra token is made up for it). An error after the headers is
    reported in-band."""
    index, held = 0, None
    top_n = body.parameters.top_n_tokens

    def event(piece: TextPiece, final: Generation | None = None) -> str:
        nonlocal index
        index += 1
        token = _token(piece.token) if piece.token is not None else {"id": None, "text": piece.text, "logprob": None}
        return sse(
            {
                "index": index,
                "token": token | {"text": piece.text, "special": bool(piece.token and piece.token.special)},
                "top_tokens": [_token(x) for x in piece.token.top] if top_n and piece.token else None,
                "generated_text": _text(body, final.text) if final else None,
                "details": _details(final) if final else None,
            }
        )

    try:
        async for item in items:
            if isinstance(item, Generation):
                yield event(held or TextPiece(""), item)
                return
            if held is not None:
                yield event(held)
            held = item
    except ApiError as e:
        yield sse(error_body(e, "/generate_stream"))


@router.get("/info")
async def info(state: ServingDep):
    return {
        "model_id": state.base.id,
        "model_sha": state.base.content_sha256,
        "router": "specialist-factory",
        "max_input_tokens": state.config.max_input_tokens,
        "max_total_tokens": state.config.max_input_tokens + state.config.max_new_tokens_cap,
    }


def _details(g: Generation) -> dict:
    if g.finish_reason == "length":
        finish = "length"
    else:  # our frame markers end an answer as EOS would: only the client's own stop strings are stop sequences
        finish = "stop_sequence" if g.stop_sequence else "eos_token"
    return {"finish_reason": finish, "generated_tokens": g.completion_tokens, "seed": g.seed}


def _token(t: GeneratedToken) -> dict:
    return {"id": t.id, "text": t.text, "logprob": t.logprob, "special": t.special}
