"""The HTTP surface: native, OpenAI- and TGI-compatible endpoints plus admin, over one router and backend.

A FastAPI app, mounted into the BentoML service (service/bento.py), which adds /livez, /readyz and /metrics.
Bad input is always a 4xx with a one-line message: 400 malformed, 401/403 admin auth, 404 unknown task,
413 too large, 422 out-of-range values. 5xx means a bug or a failed engine.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from specialist.adapters import Registry
from specialist.base_models import resolve_base_model
from specialist.errors import SpecialistError, error_line
from specialist.prompt_format import fit_prompt, is_rendered

from service.backends import Backend, EngineError, GenParams, LocalBackend, TGIBackend
from service.config import (
    ChatRequest,
    CompletionRequest,
    Parameters,
    PredictRequest,
    PromoteRequest,
    ADMIN_TOKEN_ENV,
    CONFIG_ENV,
    ServeConfig,
    TaskRequest,
    TGIRequest,
    admin_token,
)
from service.engine import AdapterGone, Generation, Sampling
from service.jobs import DuplicateJob, RequestRejected, SpecialistRequest, save_upload, validate_request
from service.metrics import Metrics
from service.router import Router, ServedTask, UnknownTask

log = logging.getLogger("specialist.service")
SWAP_RETRIES = 3  # a request caught between route switch and unload is re-routed, not failed
MAX_STOPS = 4  # as OpenAI
# Below this, temperature sampling is greedy decoding in all but name, and dividing logits by it overflows
# float32 into NaN probabilities (a 500 that also failed every request batched with it): decode greedily.
GREEDY_BELOW = 1e-4
ADMIN_PATHS = ("/admin", "/specialists", "/uploads")  # every route that needs the admin token


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        self.status, self.message, self.kind = status, message, kind
        super().__init__(message)


class ServiceState:
    """Everything a worker holds: config, registry, router, backend; plus the poller that hot-swaps routes."""

    def __init__(self, config: ServeConfig, home: Path | None = None, backend: Backend | None = None):
        self.config = config
        self.registry = Registry(home)
        self.base = resolve_base_model(config.base_model)
        if backend is None:
            if config.backend == "local":
                backend = LocalBackend(self.base, config.device, config.max_batch_size, config.max_wait_ms, config.max_resident_adapters)
            else:
                backend = TGIBackend(config.tgi_urls, self.base)
        self.backend = backend
        self.metrics = Metrics()
        if isinstance(backend, LocalBackend):
            backend.engine.on_batch = lambda size, seconds: self.metrics.batch_size.observe(size)
        permanent = getattr(backend, "permanent", lambda error: isinstance(error, SpecialistError))
        self.router = Router(self.registry, backend.load, backend.unload, permanent)
        self.router.sync()
        self.home = Path(home) if home is not None else None
        from specialist.paths import specialist_home

        from service.jobs import JobStore, JobWorker

        self.jobs = JobStore(self.home or specialist_home())
        interrupted = self.jobs.fail_interrupted()
        if interrupted:
            log.warning("%d job(s) were interrupted by a restart and marked failed", interrupted)
        # The job process reads the same config (task data, base model, gate policy) from the environment; it
        # runs on request data and needs no admin token, so it does not get one.
        job_env = {k: v for k, v in os.environ.items() if k != ADMIN_TOKEN_ENV} | {CONFIG_ENV: config.model_dump_json()}
        self.worker = JobWorker(self.jobs, self.jobs.root.parent, env=job_env)
        if isinstance(backend, LocalBackend):  # a training job takes job_threads cores; serving keeps the rest
            import torch

            serve_threads = config.num_threads or torch.get_num_threads()
            sharing = max(1, serve_threads - config.job_threads)
            backend.engine.threads_wanted = lambda: sharing if self.worker.current is not None else serve_threads
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="route-poller", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.config.poll_seconds):
            try:
                self.router.sync()
            except Exception:  # noqa: BLE001 - a failed poll is retried on the next tick
                log.exception("route sync failed")

    def ready(self) -> bool:
        return self.router.ready()

    def close(self) -> None:
        self._stop.set()
        self.worker.close()
        self.backend.close()

    # -- the one path every endpoint takes -------------------------------------------------------------------

    def resolve(self, task: str | None) -> ServedTask:
        if not task:
            raise ApiError(404, f"no task given; served tasks: {', '.join(sorted(self.router.routes)) or 'none'}", "not_found")
        try:
            return self.router.resolve(task)
        except UnknownTask as e:
            raise ApiError(404, str(e), "not_found") from None

    def render(self, served: ServedTask, text: str) -> str:
        """The adapter's own prompt around the task input (a router-forwarded full prompt passes through)."""
        budget = self.config.max_input_tokens
        if is_rendered(text):
            prompt = text if self.backend.count_tokens(text) <= budget else None
        else:  # fit_prompt only returns renderings within the budget
            prompt = fit_prompt(served.prompt, text, self.backend.count_tokens, budget)
        if prompt is None:
            raise ApiError(413, f"input too long: the prompt exceeds max_input_tokens={budget}; shorten the input")
        return prompt

    def prepare(self, task: str | None, text: str) -> tuple[ServedTask, str]:
        """Route and render: raises the 404/413 a request deserves before any work starts."""
        served = self.resolve(task)
        return served, self.render(served, text)

    def params(self, max_new_tokens: int | None, temperature: float, top_p: float, stop, seed: int | None) -> GenParams:
        cap = self.config.max_new_tokens_cap
        n = max_new_tokens or self.config.default_max_new_tokens
        if n > cap:
            raise ApiError(422, f"max_new_tokens={n} exceeds the cap of {cap}; ask for {cap} or fewer")
        stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
        if len(stops) > MAX_STOPS or any(len(s) > 64 for s in stops):
            raise ApiError(422, f"stop: at most {MAX_STOPS} stop strings of at most 64 characters")
        if temperature < GREEDY_BELOW:
            temperature = 0.0
        return GenParams(n, Sampling(temperature, top_p, seed), stops)

    async def run(self, task: str, text: str, params: GenParams, endpoint: str) -> tuple[ServedTask, Generation]:
        started = time.perf_counter()
        for _ in range(SWAP_RETRIES):
            served, prompt = self.prepare(task, text)
            try:
                result = await self.backend.generate(served, prompt, params)
            except AdapterGone:
                continue  # the route switched between routing and submission: take the new champion
            except EngineError as e:
                raise ApiError(e.status, str(e), "engine_error") from None
            except SpecialistError as e:
                raise ApiError(400, str(e)) from None
            self.metrics.observe(served.task, endpoint, time.perf_counter() - started, result.completion_tokens)
            return served, result
        raise ApiError(503, f"task {task!r} is being swapped; retry", "service_unavailable")

    async def stream(self, task: str, text: str, params: GenParams, endpoint: str):
        """Text pieces, then the final Generation; a swap before the first piece is retried like `run`."""
        started = time.perf_counter()
        for _ in range(SWAP_RETRIES):
            served, prompt = self.prepare(task, text)
            try:
                async for item in self.backend.stream(served, prompt, params):
                    if isinstance(item, Generation):
                        self.metrics.observe(served.task, endpoint, time.perf_counter() - started, item.completion_tokens)
                    yield item
                return
            except AdapterGone:
                continue
            except EngineError as e:
                raise ApiError(e.status, str(e), "engine_error") from None
        raise ApiError(503, f"task {task!r} is being swapped; retry", "service_unavailable")


def _check_admin(request: Request) -> None:
    _check_admin_header(request.headers.get("authorization", ""))


def _check_admin_header(header: str) -> None:
    token = admin_token()
    if not token:
        raise ApiError(401, "admin API disabled: set SPECIALIST_ADMIN_TOKEN on the server", "authentication_error")
    if not header.lower().startswith("bearer "):
        raise ApiError(401, "missing bearer token: send Authorization: Bearer <SPECIALIST_ADMIN_TOKEN>", "authentication_error")
    if not hmac.compare_digest(header[7:].strip().encode(), token.encode()):  # constant time
        raise ApiError(403, "wrong admin token", "permission_error")


def _sse(payload: dict | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)}\n\n"


def create_app(state: ServiceState) -> FastAPI:
    app = FastAPI(title="Specialist Factory", description="Task specialists (LoRA adapters) behind one API.", version="0.1.0")

    app.add_middleware(BodyLimit, limit_for=lambda path: state.config.max_upload_bytes if path == "/uploads" else state.config.max_body_bytes,
                       timeout_for=lambda: state.config.body_timeout_seconds)  # fmt: skip
    app.add_middleware(AdminAuth)  # added last = runs first: no admin body is read before the token is checked

    @app.exception_handler(ApiError)
    async def api_error(_, exc: ApiError):
        state.metrics.errors.labels(str(exc.status)).inc()
        return _error(exc.status, exc.message, exc.kind)

    @app.exception_handler(RequestValidationError)
    async def invalid(_, exc: RequestValidationError):
        # For unions pydantic reports every alternative; the deepest location is the most specific complaint.
        err = max(exc.errors(), key=lambda e: len(e.get("loc", ())))
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        status = 400 if err.get("type") == "json_invalid" else 422
        state.metrics.errors.labels(str(status)).inc()
        if status == 400:  # FastAPI puts the decoder's complaint in ctx and the offset in loc
            detail = (err.get("ctx") or {}).get("error") or err.get("msg")
            return _error(400, f"malformed JSON at character {where}: {detail}", "invalid_request_error")
        return _error(422, f"{where}: {str(err.get('msg')).removeprefix('Value error, ')}", "invalid_request_error")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no endpoint at {request.url.path}; see /docs for the API"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see /docs for the API"
        elif exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI's "There was an error parsing the body"
            message = f"malformed JSON: {_parse_problem(exc.__cause__)}"
        return _error(exc.status_code, message, "invalid_request_error")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        # A bug, not bad input: logged with its traceback; the client still gets a JSON message, not bare text.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, f"internal error ({type(exc).__name__}); the request was not completed, see the server log", "server_error")

    # -- native --------------------------------------------------------------------------------------------

    @app.post("/predict")
    async def predict(body: PredictRequest):
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

    @app.get("/tasks")
    async def tasks():
        return {
            "base_model": state.base.id,
            "tasks": [
                {"task": s.task, "version": s.version, "base_model": s.base_model, "scores": s.scores}
                for s in sorted(state.router.routes.values(), key=lambda s: s.task)
            ],
            "refused": dict(state.router.errors),
        }

    # -- OpenAI-compatible ---------------------------------------------------------------------------------

    @app.get("/v1/models")
    async def models():
        now = int(time.time())
        return {"object": "list", "data": [{"id": t, "object": "model", "created": now, "owned_by": "specialist-factory"} for t in sorted(state.router.routes)]}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        if isinstance(body.prompt, list):
            if len(body.prompt) != 1:
                raise ApiError(422, "prompt: send one prompt per request")
            body.prompt = body.prompt[0]
        params = state.params(body.max_tokens, body.temperature, body.top_p, body.stop, body.seed)
        served, _ = state.prepare(body.model, body.prompt)
        rid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def chunk(text: str, finish: str | None) -> dict:
            return {"id": rid, "object": "text_completion", "created": created, "model": served.task,
                    "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]}  # fmt: skip

        if body.stream:
            return _stream(state, body.model, body.prompt, params, "completions", lambda piece: chunk(piece, None), lambda g: chunk("", g.finish_reason))
        served, result = await state.run(body.model, body.prompt, params, "completions")
        return chunk(result.text, result.finish_reason) | {"usage": _usage(result)}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest):
        user = [m for m in body.messages if m.role == "user"]
        if not user:
            raise ApiError(422, "messages: include a user message (its content is the task input)")
        content = user[-1].content
        if isinstance(content, list):  # content parts: take the text ones
            texts = [part.get("text") for part in content if isinstance(part, dict) and part.get("type") == "text"]
            if not all(isinstance(t, str) for t in texts):
                raise ApiError(422, "messages: a text content part needs a string 'text'")
            content = "".join(texts)
        params = state.params(body.max_completion_tokens or body.max_tokens, body.temperature, body.top_p, body.stop, body.seed)
        content = content or ""
        served, _ = state.prepare(body.model, content)
        rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def chunk(delta: dict, finish: str | None) -> dict:
            return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": served.task,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}  # fmt: skip

        if body.stream:
            first = [True]

            def piece_chunk(piece: str) -> dict:
                delta = {"role": "assistant", "content": piece} if first[0] else {"content": piece}
                first[0] = False
                return chunk(delta, None)

            return _stream(state, body.model, content, params, "chat", piece_chunk, lambda g: chunk({}, g.finish_reason))
        served, result = await state.run(body.model, content, params, "chat")
        return {
            "id": rid, "object": "chat.completion", "created": created, "model": served.task,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text.strip()}, "logprobs": None,
                         "finish_reason": result.finish_reason}],
            "usage": _usage(result),
        }  # fmt: skip

    # -- TGI-compatible ------------------------------------------------------------------------------------

    def _tgi(body: TGIRequest) -> GenParams:
        p = body.parameters
        state.prepare(p.adapter_id, body.inputs)  # TGI itself would silently use the base model: we never do
        temperature = (p.temperature or 1.0) if (p.do_sample or p.temperature) else 0.0
        return state.params(p.max_new_tokens, temperature, p.top_p or 1.0, p.stop, p.seed)

    @app.post("/generate")
    async def generate(body: TGIRequest):
        params = _tgi(body)
        _, result = await state.run(body.parameters.adapter_id, body.inputs, params, "generate")
        response = {"generated_text": result.text}
        if body.parameters.details:
            response["details"] = _tgi_details(result)
        return response

    @app.post("/")
    async def tgi_compat(body: TGIRequest):
        """TGI's compat route, which huggingface_hub's InferenceClient(base_url=...) posts to."""
        if body.stream:
            return await generate_stream(body)
        return [await generate(body)]

    @app.post("/generate_stream")
    async def generate_stream(body: TGIRequest):
        params = _tgi(body)
        counter = iter(range(1, 1_000_000))

        def token(piece: str) -> dict:
            return {"index": next(counter), "token": {"id": 0, "text": piece, "logprob": 0.0, "special": False},
                    "generated_text": None, "details": None}  # fmt: skip

        def final(g: Generation) -> dict:
            return {"index": next(counter), "token": {"id": 0, "text": "", "logprob": 0.0, "special": True},
                    "generated_text": g.text, "details": _tgi_details(g, stream=True)}  # fmt: skip

        return _stream(state, body.parameters.adapter_id, body.inputs, params, "generate_stream", token, final, done_marker=False)

    @app.get("/info")
    async def info():
        return {"model_id": state.base.id, "model_sha": state.base.content_sha256, "router": "specialist-factory",
                "max_input_tokens": state.config.max_input_tokens, "max_total_tokens": state.config.max_input_tokens + state.config.max_new_tokens_cap}  # fmt: skip

    # -- admin ---------------------------------------------------------------------------------------------

    @app.post("/admin/promote")
    async def promote(body: PromoteRequest, request: Request):
        _check_admin(request)
        try:
            await _storage_call("registry", state.registry.promote, body.task, body.version, actor="api")
        except SpecialistError as e:
            raise ApiError(404 if "no version" in e.problem else 400, str(e)) from None
        await _storage_call("registry", state.router.sync)  # loading may wait for a batch: keep the event loop free
        return _route_report(state, body.task)

    @app.post("/admin/rollback")
    async def rollback(body: TaskRequest, request: Request):
        _check_admin(request)
        try:
            await _storage_call("registry", state.registry.rollback, body.task, actor="api")
        except SpecialistError as e:
            raise ApiError(400, str(e)) from None
        await _storage_call("registry", state.router.sync)  # loading may wait for a batch: keep the event loop free
        return _route_report(state, body.task)

    @app.post("/admin/reload")
    async def reload(request: Request):
        _check_admin(request)
        changed = await _storage_call("registry", state.router.sync)
        return {"changed": changed, "tasks": sorted(state.router.routes), "refused": dict(state.router.errors)}

    # -- specialist requests (jobs) ------------------------------------------------------------------------

    @app.post("/uploads", status_code=201)
    async def upload(request: Request):
        _check_admin(request)
        data = await request.body()
        upload_id, count = await _storage_call("job store", _jobs_call, lambda: save_upload(state.jobs.root.parent, data, state.config.max_upload_bytes))
        return {"upload_id": upload_id, "records": count}

    @app.post("/specialists", status_code=202)
    async def request_specialist(body: SpecialistRequest, request: Request):
        _check_admin(request)
        await _storage_call("job store", _jobs_call, lambda: validate_request(body, state.config, state.jobs.root.parent))
        try:
            job_id = await _storage_call("job store", state.jobs.create, body)
        except DuplicateJob as e:
            raise ApiError(409, str(e), "conflict") from None
        return {"job_id": job_id, "status": "queued"}

    @app.get("/specialists")
    async def list_jobs(request: Request):
        _check_admin(request)
        return {"jobs": await _storage_call("job store", state.jobs.list)}

    @app.get("/specialists/{job_id}")
    async def get_job(job_id: str, request: Request):
        _check_admin(request)
        job = await _storage_call("job store", state.jobs.get, job_id) if _is_job_id(job_id) else None
        if job is None:
            raise ApiError(404, f"no job {job_id!r}", "not_found")
        return job

    @app.delete("/specialists/{job_id}")
    async def cancel_job(job_id: str, request: Request):
        _check_admin(request)
        status = await _storage_call("job store", state.jobs.request_cancel, job_id) if _is_job_id(job_id) else None
        if status is None:
            raise ApiError(404, f"no job {job_id!r}", "not_found")
        return {"job_id": job_id, "status": status}

    return app


class AdminAuth:
    """401/403 on the admin paths before anything else reads the request: an unauthenticated client learns
    nothing about bodies (no 400/413/422) and costs no parsing. The endpoints check the token again."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope["path"].removeprefix(scope.get("root_path", "")) or "/"
            if any(path == p or path.startswith(p + "/") for p in ADMIN_PATHS):
                header = dict(scope.get("headers", [])).get(b"authorization", b"").decode("latin-1")
                try:
                    _check_admin_header(header)
                except ApiError as e:
                    return await _error(e.status, e.message, e.kind)(scope, receive, send)
        await self.app(scope, receive, send)


class BodyLimit:
    """413 for bodies over the limit, by Content-Length or, for chunked bodies, by counting what arrives; 408
    for a body that does not arrive within `timeout` seconds (a slow or stalled client holds nothing longer).

    The body is read here (at most `limit` bytes are ever held) and replayed to the app.
    """

    def __init__(self, app, limit_for, timeout_for=lambda: 30.0):
        self.app, self.limit_for, self.timeout_for = app, limit_for, timeout_for

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        limit, timeout = self.limit_for(scope["path"]), self.timeout_for()
        too_large = _error(413, f"request body larger than {limit} bytes", "invalid_request_error")
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await too_large(scope, receive, send)
        chunks, size, more = [], 0, True
        deadline = asyncio.get_running_loop().time() + timeout
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - asyncio.get_running_loop().time()))
            except asyncio.TimeoutError:
                return await _error(408, f"request body not received within {timeout:g} s", "invalid_request_error")(scope, receive, send)
            if message["type"] == "http.disconnect":
                # Always answer, even a client that is gone (the server drops it): a wrapper that waits for a
                # response (BentoML's timeout middleware) would otherwise hold the request for its whole timeout,
                # and block a graceful shutdown until then.
                return await _error(400, "the client disconnected before sending the whole body", "invalid_request_error")(scope, receive, send)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > limit:
                return await too_large(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # later calls: disconnect detection for streaming responses

        await self.app(scope, replay, send)


async def _storage_call(what: str, fn, *args, **kwargs):
    """Run a registry or job-table call off the event loop. Storage that cannot be read or written (disk full,
    read-only home) is a 503 naming the cause; the routes already served keep serving."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except (sqlite3.Error, OSError) as e:
        log.error("%s unavailable: %s", what, e)
        raise ApiError(503, f"the {what} could not be read or written ({e}); check free space and permissions of "
                            "$SPECIALIST_HOME; the current routes keep serving", "service_unavailable") from None  # fmt: skip


def _parse_problem(error: BaseException) -> str:
    if isinstance(error, RecursionError):
        return "the body is nested too deeply"
    if isinstance(error, UnicodeDecodeError):
        return "the body is not UTF-8 text"
    if isinstance(error, ValueError) and "digits" in str(error):
        return "a number has too many digits"
    return error_line(error, 120)


def _is_job_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


def _jobs_call(fn):
    try:
        return fn()
    except RequestRejected as e:
        raise ApiError(e.status, str(e)) from None
    except SpecialistError as e:
        raise ApiError(422, str(e)) from None


def _route_report(state: ServiceState, task: str) -> dict:
    served = state.router.routes.get(task)
    return {"task": task, "serving_version": served.version if served else None, "refused": state.router.errors.get(task)}


def _usage(g: Generation) -> dict:
    return {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens, "total_tokens": g.prompt_tokens + g.completion_tokens}


def _tgi_details(g: Generation, stream: bool = False) -> dict:
    details = {"finish_reason": "length" if g.finish_reason == "length" else "eos_token", "generated_tokens": g.completion_tokens, "seed": None}
    if not stream:
        details |= {"prefill": [], "tokens": []}
    return details


def _error(status: int, message: str, kind: str) -> JSONResponse:
    # OpenAI-style body (the openai client reads error.message); TGI clients read the status and text.
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")  # an echoed bad name must not break the reply
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def _stream(state: ServiceState, task: str, text: str, params: GenParams, endpoint: str, on_piece, on_end,
            done_marker: bool = True) -> StreamingResponse:  # fmt: skip
    async def events():
        try:
            async for item in state.stream(task, text, params, endpoint):
                yield _sse(on_end(item) if isinstance(item, Generation) else on_piece(item))
        except ApiError as e:  # headers are sent: report in-band, as OpenAI and TGI do
            yield _sse({"error": {"message": e.message, "type": e.kind, "code": e.status}})
        if done_marker:
            yield _sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream")
