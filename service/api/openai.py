"""The OpenAI-compatible dialect: /v1/models, /v1/completions, /v1/chat/completions (the task is the model)."""

from __future__ import annotations

import logging
import time
import uuid

from fastapi import APIRouter

from service.config import ChatRequest, CompletionRequest
from service.engine import Generation, TextPiece
from service.http import ApiError, sse_response
from service.state import ServingDep

router = APIRouter()
log = logging.getLogger("specialist.service")


@router.get("/v1/models")
async def models(state: ServingDep):
    now = int(time.time())
    return {
        "object": "list",
        "data": [
            {"id": t, "object": "model", "created": now, "owned_by": "specialist-factory"}
            for t in sorted(state.router.routes)
        ],
    }


def _log_user(user: str | None, model: str) -> None:
    if user is not None:  # OpenAI's end-user id: accepted, and recorded with the request
        log.info("request for %s from user %r", model, user)


@router.post("/v1/completions")
async def completions(body: CompletionRequest, state: ServingDep):
    _log_user(body.user, body.model)
    if isinstance(body.prompt, list):
        if len(body.prompt) != 1:
            raise ApiError(422, "prompt: send one prompt per request")
        body.prompt = body.prompt[0]
    params = state.params(body.max_tokens, body.temperature, body.top_p, body.stop, body.seed)
    served, _ = state.prepare(body.model, body.prompt)
    rid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    def chunk(text: str, finish: str | None) -> dict:
        return {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": served.task,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
        }

    if body.stream:
        return sse_response(
            state.stream(body.model, body.prompt, params, "completions"),
            lambda piece: chunk(piece.text, None),
            lambda g: chunk("", g.finish_reason),
        )
    served, result = await state.run(body.model, body.prompt, params, "completions")
    return chunk(result.text, result.finish_reason) | {"usage": _usage(result)}


@router.post("/v1/chat/completions")
async def chat(body: ChatRequest, state: ServingDep):
    _log_user(body.user, body.model)
    user = [m for m in body.messages if m.role == "user"]
    if not user:
        raise ApiError(422, "messages: include a user message (its content is the task input)")
    content = user[-1].content
    if isinstance(content, list):  # content parts: take the text ones
        texts = [part.get("text") for part in content if isinstance(part, dict) and part.get("type") == "text"]
        if not all(isinstance(t, str) for t in texts):
            raise ApiError(422, "messages: a text content part needs a string 'text'")
        content = "".join(texts)
    params = state.params(
        body.max_completion_tokens or body.max_tokens, body.temperature, body.top_p, body.stop, body.seed
    )
    content = content or ""
    served, _ = state.prepare(body.model, content)
    rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    def chunk(delta: dict, finish: str | None) -> dict:
        return {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": served.task,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    if body.stream:
        first, begun = [True], [False]

        def piece_chunk(piece: TextPiece) -> dict:
            # The answer follows the prompt's "Output:" after a space: dropped here as in the whole message.
            text = piece.text if begun[0] else piece.text.lstrip()
            begun[0] = begun[0] or bool(text)
            delta = {"role": "assistant", "content": text} if first[0] else {"content": text}
            first[0] = False
            return chunk(delta, None)

        return sse_response(
            state.stream(body.model, content, params, "chat"), piece_chunk, lambda g: chunk({}, g.finish_reason)
        )
    served, result = await state.run(body.model, content, params, "chat")
    return {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": served.task,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text.lstrip()},
                "logprobs": None,
                "finish_reason": result.finish_reason,
            }
        ],
        "usage": _usage(result),
    }


def _usage(g: Generation) -> dict:
    return {
        "prompt_tokens": g.prompt_tokens,
        "completion_tokens": g.completion_tokens,
        "total_tokens": g.prompt_tokens + g.completion_tokens,
    }
