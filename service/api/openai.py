"""The OpenAI-compatible dialect: /v1/models, /v1/completions, /v1/chat/completions (the task is the model).

A request is `n` choices for each prompt (a completions request may send several prompts), generated
concurrently in the one running batch; choice `j` of a seeded request samples with `seed + j`, so every
choice is reproducible. Streams interleave the choices' chunks, each tagged with its `index`, as OpenAI does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from service.backends import GenParams
from service.config import ChatRequest, CompletionRequest
from service.generation import GeneratedToken, Generation, TextPiece
from service.http import ApiError, error_body, require_inference, sse
from service.state import ServingDep, ServingState

router = APIRouter(dependencies=[Depends(require_inference)])
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


@router.post("/v1/completions")
async def completions(body: CompletionRequest, state: ServingDep):
    _log_user(body.user, body.model)
    prompts = body.prompt if isinstance(body.prompt, list) else [body.prompt]
    params = _params(state, body, body.max_tokens, top_logprobs=body.logprobs or 0)
    for prompt in prompts:
        state.prepare(body.model, prompt)  # 404/413 before any work
    jobs = [(prompt, choice) for prompt in prompts for choice in _choices(params, body.n)]  # OpenAI's index order
    rid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    echo = [prompt if body.echo else "" for prompt, _ in jobs]

    def logprobs(tokens: list[GeneratedToken]) -> dict | None:
        return _completion_logprobs(tokens, body.logprobs) if body.logprobs is not None else None

    def choice(index: int, text: str, tokens: list[GeneratedToken], finish: str | None) -> dict:
        return {"index": index, "text": text, "logprobs": logprobs(tokens), "finish_reason": finish}

    def envelope(choices: list[dict]) -> dict:
        return {"id": rid, "object": "text_completion", "created": created, "model": body.model, "choices": choices}

    if body.stream:

        def on_piece(index: int, piece: TextPiece, first: bool) -> dict:
            return envelope([choice(index, echo[index] * first + piece.text, list(piece.tokens), None)])

        def on_end(index: int, g: Generation) -> dict:
            return envelope([choice(index, "", [], g.finish_reason)])

        streams = [state.stream(body.model, prompt, p, "completions") for prompt, p in jobs]
        return _stream(streams, on_piece, on_end, envelope, _wants_usage(body), len(prompts))
    results = await asyncio.gather(*(state.run(body.model, prompt, p, "completions") for prompt, p in jobs))
    choices = [choice(i, echo[i] + g.text, g.answer_tokens(), g.finish_reason) for i, (_, g) in enumerate(results)]
    return envelope(choices) | {"usage": _usage([g for _, g in results], len(prompts))}


@router.post("/v1/chat/completions")
async def chat(body: ChatRequest, state: ServingDep):
    _log_user(body.user, body.model)
    content = _user_input(body)
    params = _params(state, body, body.max_completion_tokens or body.max_tokens, top_logprobs=body.top_logprobs or 0)
    state.prepare(body.model, content)
    jobs = _choices(params, body.n)
    rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    def logprobs(tokens: list[GeneratedToken]) -> dict | None:
        return {"content": [_chat_logprob(t) for t in tokens], "refusal": None} if body.logprobs else None

    def envelope(choices: list[dict], obj: str = "chat.completion.chunk") -> dict:
        return {"id": rid, "object": obj, "created": created, "model": body.model, "choices": choices}

    if body.stream:
        begun = [False] * len(jobs)

        def on_piece(index: int, piece: TextPiece, first: bool) -> dict:
            # The answer follows the prompt's "Output:" after a space: dropped here as in the whole message.
            text = piece.text if begun[index] else piece.text.lstrip()
            begun[index] = begun[index] or bool(text)
            delta = {"role": "assistant", "content": text} if first else {"content": text}
            return envelope(
                [{"index": index, "delta": delta, "logprobs": logprobs(list(piece.tokens)), "finish_reason": None}]
            )

        def on_end(index: int, g: Generation) -> dict:
            return envelope([{"index": index, "delta": {}, "logprobs": None, "finish_reason": g.finish_reason}])

        streams = [state.stream(body.model, content, p, "chat") for p in jobs]
        return _stream(streams, on_piece, on_end, envelope, _wants_usage(body), 1)
    results = await asyncio.gather(*(state.run(body.model, content, p, "chat") for p in jobs))
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": g.text.lstrip()},
            "logprobs": logprobs(g.answer_tokens()),
            "finish_reason": g.finish_reason,
        }
        for i, (_, g) in enumerate(results)
    ]
    return envelope(choices, "chat.completion") | {"usage": _usage([g for _, g in results], 1)}


# -- pieces both endpoints share -------------------------------------------------------------------------------


def _log_user(user: str | None, model: str) -> None:
    if user is not None:  # OpenAI's end-user id: accepted, and recorded with the request
        log.info("request for %s from user %r", model, user)


def _user_input(body: ChatRequest) -> str:
    user = [m for m in body.messages if m.role == "user"]
    if not user:
        raise ApiError(422, "messages: include a user message (its content is the task input)", param="messages")
    content = user[-1].content
    if isinstance(content, list):  # content parts: take the text ones
        texts = [part.get("text") for part in content if isinstance(part, dict) and part.get("type") == "text"]
        if not all(isinstance(t, str) for t in texts):
            raise ApiError(422, "messages: a text content part needs a string 'text'", param="messages")
        content = "".join(texts)
    return content or ""


def _params(state: ServingState, body, max_tokens: int | None, top_logprobs: int) -> GenParams:
    return state.params(
        max_tokens,
        body.temperature,
        body.top_p,
        body.stop,
        body.seed,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        top_logprobs=top_logprobs,
        grammar=body.response_format.grammar() if body.response_format else None,
        grammar_param="response_format",
    )


def _choices(params: GenParams, n: int) -> list[GenParams]:
    """n copies of the parameters; sampled ones draw with seed, seed + 1, ... (greedy choices are identical)."""
    s = params.sampling
    if s.temperature == 0 or s.seed is None:
        return [params] * n
    return [dataclasses.replace(params, sampling=dataclasses.replace(s, seed=s.seed + j)) for j in range(n)]


def _wants_usage(body) -> bool:
    return bool(body.stream_options and body.stream_options.include_usage)


def _usage(results: list[Generation], prompts: int) -> dict:
    """Each prompt counted once, however many choices it has (OpenAI counts them so)."""
    per_prompt = len(results) // max(1, prompts)
    prompt_tokens = sum(g.prompt_tokens for g in results[::per_prompt]) if results else 0
    completion = sum(g.completion_tokens for g in results)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion}


def _chat_logprob(t: GeneratedToken) -> dict:
    def entry(x: GeneratedToken) -> dict:
        return {"token": x.text, "logprob": x.logprob, "bytes": list(x.text.encode("utf-8"))}

    return entry(t) | {"top_logprobs": [entry(x) for x in t.top]}


def _completion_logprobs(tokens: list[GeneratedToken], top: int) -> dict:
    offsets, at = [], 0
    for t in tokens:
        offsets.append(at)
        at += len(t.text)
    return {
        "tokens": [t.text for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [{x.text: x.logprob for x in t.top} for t in tokens] if top else None,
        "text_offset": offsets,
    }


def _stream(streams, on_piece, on_end, envelope, include_usage: bool, prompts: int) -> StreamingResponse:
    """Interleave the choices' streams as they produce, then (if asked) the usage chunk, then [DONE]."""

    async def events():
        first = [True] * len(streams)
        finals: list[Generation] = []
        try:
            async for index, item in _merged(streams):
                if isinstance(item, Generation):
                    finals.append(item)
                    yield sse(on_end(index, item))
                else:
                    yield sse(on_piece(index, item, first[index]))
                    first[index] = False
            if include_usage:
                yield sse(envelope([]) | {"usage": _usage(finals, prompts)})
        except ApiError as e:  # after the headers: reported in-band, as OpenAI does
            yield sse(error_body(e))
        yield sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream")


async def _merged(streams: list[AsyncIterator]) -> AsyncIterator[tuple[int, TextPiece | Generation]]:
    """(index, item) from every stream as soon as it has one. Leaving early (a client gone) closes them all,
    which frees their rows of the batch."""
    queue: asyncio.Queue = asyncio.Queue()
    end = object()

    async def pump(index: int, stream: AsyncIterator) -> None:
        try:
            async for item in stream:
                await queue.put((index, item))
        except Exception as e:  # noqa: BLE001 - handed to the reader, which raises it
            await queue.put((index, e))
        finally:
            await queue.put((index, end))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    running = len(tasks)
    try:
        while running:
            index, item = await queue.get()
            if item is end:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
