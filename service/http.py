"""HTTP plumbing every API dialect shares: the error type and its JSON body, SSE framing, the admin token
check (one FastAPI dependency, plus the middleware that applies it before a body is read), the body-size and
body-timeout limit, the exception handlers, and storage calls off the event loop.

Bad input is always a 4xx with a one-line message: 400 malformed, 401/403 admin auth, 404 unknown task,
413 too large, 422 out-of-range values. 5xx means a bug or a failed engine.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute

from service.config import ADMIN_TOKEN_ENV, ARTIFACT_TOKEN_ENV, INFERENCE_TOKEN_ENV, REQUEST_TOKEN_ENV
from specialist.database import STORAGE_ERRORS, storage_error_line, storage_fix
from specialist.errors import error_line

log = logging.getLogger("specialist.service")


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ):
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code
        super().__init__(message)


MODEL_NOT_FOUND = "model_not_found"  # the code of an unknown task, as OpenAI names an unknown model
TGI_PATHS = ("/generate", "/generate_stream")
# Where each dialect names the task, for an unknown one.
_TASK_PARAM = {"openai": "model", "tgi": "parameters.adapter_id", "native": "task"}


def dialect(path: str, method: str = "POST") -> str:
    if path in TGI_PATHS or path.startswith("/tgi/") or (path == "/" and method == "POST"):
        return "tgi"
    return "openai" if path.startswith("/v1/") else "native"


def error_body(error: ApiError, path: str = "", method: str = "POST") -> dict:
    """The error as the dialect's clients expect it: TGI's {error, error_type}; OpenAI's {error: {message, type,
    param, code}} for everything else (the native API uses OpenAI's shape too)."""
    message = error.message.encode("utf-8", "backslashreplace").decode("utf-8")  # an echoed bad name stays sendable
    kind = dialect(path, method)
    if kind == "tgi":
        return {"error": message, "error_type": error.kind}
    param = _TASK_PARAM[kind] if error.code == MODEL_NOT_FOUND else error.param
    return {"error": {"message": message, "type": error.kind, "param": param, "code": error.code}}


def error_response(error: ApiError, path: str = "", method: str = "POST") -> JSONResponse:
    return JSONResponse(error_body(error, path, method), status_code=error.status)


# -- server-sent events ---------------------------------------------------------------------------------------


def sse(payload: dict | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)}\n\n"


# -- the admin token ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    """Who may call a group of routes: a bearer token from any of `token_envs` (the first is the role's own);
    with none of them set the routes are `open_when_unset`, or refused."""

    name: str
    token_envs: tuple[str, ...]
    open_when_unset: bool
    scheme: HTTPBearer  # declares the role's bearer scheme in the OpenAPI spec; never refuses by itself

    def tokens(self) -> list[str]:
        return [t for t in (os.environ.get(env) for env in self.token_envs) if t]

    def check(self, header: str) -> None:
        """401 without a token (or with the role disabled), 403 with a wrong one; constant-time comparison."""
        tokens, own = self.tokens(), self.token_envs[0]
        if not tokens:
            if self.open_when_unset:
                return
            raise ApiError(401, f"{self.name} API disabled: set {own} on the server", "authentication_error")
        if not header.lower().startswith("bearer "):
            raise ApiError(401, f"missing bearer token: send Authorization: Bearer <{own}>", "authentication_error")
        sent = header[7:].strip().encode()
        # Every token compared, each in constant time: the answer's timing says nothing about which was close.
        if not any([hmac.compare_digest(sent, token.encode()) for token in tokens]):
            raise ApiError(403, f"wrong {self.name} token", "permission_error")


def _scheme(name: str, envs: str) -> HTTPBearer:
    return HTTPBearer(
        scheme_name=name, description=f"{envs}, sent as `Authorization: Bearer <token>`", auto_error=False
    )


INFERENCE = Role("inference", (INFERENCE_TOKEN_ENV,), True, _scheme("inferenceToken", INFERENCE_TOKEN_ENV))
REQUEST = Role(
    "request",
    (REQUEST_TOKEN_ENV, ADMIN_TOKEN_ENV),  # the admin token grants the request role too
    False,
    _scheme("requestToken", f"{REQUEST_TOKEN_ENV} (or {ADMIN_TOKEN_ENV})"),
)
ADMIN = Role("admin", (ADMIN_TOKEN_ENV,), False, _scheme("adminToken", ADMIN_TOKEN_ENV))
ADMIN_BEARER = ADMIN.scheme
ARTIFACTS = Role(
    "artifacts",
    (ARTIFACT_TOKEN_ENV, ADMIN_TOKEN_ENV),  # engines get their own token: it reads adapter files, nothing else
    False,
    _scheme("artifactToken", f"{ARTIFACT_TOKEN_ENV} (or {ADMIN_TOKEN_ENV})"),
)


async def require_inference(
    request: Request, _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(INFERENCE.scheme)]
) -> None:
    """Inference routes (native, OpenAI, TGI): open unless SPECIALIST_INFERENCE_TOKEN is set."""
    INFERENCE.check(request.headers.get("authorization", ""))


async def require_request(
    request: Request, _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(REQUEST.scheme)]
) -> None:
    """Specialist jobs: submit, read, cancel (the request token, or the admin token)."""
    REQUEST.check(request.headers.get("authorization", ""))


async def require_admin(
    request: Request, _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(ADMIN.scheme)]
) -> None:
    """Promote, roll back, reload (async: no thread hop)."""
    ADMIN.check(request.headers.get("authorization", ""))


async def require_artifacts(
    request: Request, _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(ARTIFACTS.scheme)]
) -> None:
    """Adapter files for engines elsewhere (the artifact token, or the admin token)."""
    ARTIFACTS.check(request.headers.get("authorization", ""))


_ROLE_OF = {
    require_inference: INFERENCE,
    require_request: REQUEST,
    require_admin: ADMIN,
    require_artifacts: ARTIFACTS,
}


def route_role(route: APIRoute) -> Role | None:
    """The role a route declares (on itself or its router), or None for a public route."""
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        if dependant.call in _ROLE_OF:
            return _ROLE_OF[dependant.call]
        pending.extend(dependant.dependencies)
    return None


def requires_admin(route: APIRoute) -> bool:
    """Whether a route needs a token that the server must be given (every role but inference, which is open
    unless its token is set)."""
    return route_role(route) not in (None, INFERENCE)


def admin_prefixes(routes: Iterable[BaseRoute]) -> tuple[str, ...]:
    """The top-level path segments of the routes that need an admin or request token: the middleware guards
    everything under them (an unknown /admin/x is 401 too, not a 404 that confirms the path space). A public
    route under one of them would be guarded by mistake, so that is refused here."""
    return tuple(guarded_prefixes(routes))


def guarded_prefixes(routes: Iterable[BaseRoute]) -> dict[str, Role]:
    routes = [r for r in routes if isinstance(r, APIRoute)]
    guarded: dict[str, Role] = {}
    for r in routes:
        if requires_admin(r):
            prefix = "/" + r.path.split("/")[1]
            if guarded.setdefault(prefix, route_role(r)) is not route_role(r):
                raise RuntimeError(f"routes under {prefix} need different roles: give each role its own prefix")
    public = [r.path for r in routes if not requires_admin(r) and under(r.path, guarded)]
    if public:
        raise RuntimeError(
            f"public routes {public} lie under the token-guarded paths {tuple(sorted(guarded))}: move them or "
            "declare their role"
        )
    return dict(sorted(guarded.items()))


def inference_routes(routes: Iterable[BaseRoute]) -> list[tuple[str, re.Pattern]]:
    """(method, path pattern) of every route that declares the inference role (`/tgi/{task}` included)."""
    return [
        (method, r.path_regex)
        for r in routes
        if isinstance(r, APIRoute) and route_role(r) is INFERENCE
        for method in r.methods
    ]


def under(path: str, prefixes: Iterable[str]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


class TokenAuth:
    """401/403 before anything else reads the request: an unauthenticated client learns nothing about bodies
    (no 400/413/422) and costs no parsing. Token-guarded prefixes (admin, request) are guarded whole; inference
    routes by their exact path. The routes check the token again (their `require_*` dependency)."""

    def __init__(self, app, prefixes: dict[str, Role], inference: list[tuple[str, re.Pattern]]):
        self.app, self.prefixes, self.inference = app, prefixes, inference

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope["path"].removeprefix(scope.get("root_path", "")) or "/"
            role = next((r for p, r in self.prefixes.items() if under(path, (p,))), None)
            if role is None and any(m == scope["method"] and p.match(path) for m, p in self.inference):
                role = INFERENCE
            if role is not None:
                header = dict(scope.get("headers", [])).get(b"authorization", b"").decode("latin-1")
                try:
                    role.check(header)
                except ApiError as e:
                    return await error_response(e, path, scope["method"])(scope, receive, send)
        await self.app(scope, receive, send)


# -- request bodies -------------------------------------------------------------------------------------------


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
        where = (scope["path"], scope["method"])
        too_large = error_response(ApiError(413, f"request body larger than {limit} bytes"), *where)
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await too_large(scope, receive, send)
        chunks, size, more = [], 0, True
        deadline = asyncio.get_running_loop().time() + timeout
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - asyncio.get_running_loop().time()))
            except asyncio.TimeoutError:
                return await error_response(ApiError(408, f"request body not received within {timeout:g} s"), *where)(
                    scope, receive, send
                )
            if message["type"] == "http.disconnect":
                # Always answer, even a client that is gone (the server drops it): a wrapper that waits for a
                # response (BentoML's timeout middleware) would otherwise hold the request for its whole timeout,
                # and block a graceful shutdown until then.
                return await error_response(
                    ApiError(400, "the client disconnected before sending the whole body"), *where
                )(scope, receive, send)
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


# -- exception handlers ---------------------------------------------------------------------------------------


def install_error_handlers(app: FastAPI, count_error: Callable[[int], None]) -> None:
    """Every failure as the JSON error body; `count_error(status)` counts the ones the metrics report."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        count_error(exc.status)
        return error_response(exc, request.url.path, request.method)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        # For unions pydantic reports every alternative; the deepest location is the most specific complaint.
        err = max(exc.errors(), key=lambda e: len(e.get("loc", ())))
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        status = 400 if err.get("type") == "json_invalid" else 422
        count_error(status)
        at = (request.url.path, request.method)
        if status == 400:  # FastAPI puts the decoder's complaint in ctx and the offset in loc
            detail = (err.get("ctx") or {}).get("error") or err.get("msg")
            return error_response(ApiError(400, f"malformed JSON at character {where}: {detail}"), *at)
        message = f"{where}: {str(err.get('msg')).removeprefix('Value error, ')}"
        return error_response(ApiError(422, message, param=None if where == "body" else where), *at)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no endpoint at {request.url.path}; see /docs for the API"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see /docs for the API"
        elif exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI's "There was an error parsing the body"
            message = f"malformed JSON: {_parse_problem(exc.__cause__)}"
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(ApiError(exc.status_code, message, kind), request.url.path, request.method)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        # A bug, not bad input: logged with its traceback; the client still gets a JSON message, not bare text.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        message = f"internal error ({type(exc).__name__}); the request was not completed, see the server log"
        return error_response(ApiError(500, message, "server_error"), request.url.path, request.method)


def _parse_problem(error: BaseException) -> str:
    if isinstance(error, RecursionError):
        return "the body is nested too deeply"
    if isinstance(error, UnicodeDecodeError):
        return "the body is not UTF-8 text"
    if isinstance(error, ValueError) and "digits" in str(error):
        return "a number has too many digits"
    return error_line(error, 120)


# -- storage --------------------------------------------------------------------------------------------------


async def storage_call(what: str, fn, *args, **kwargs):
    """Run a registry or job-table call off the event loop. Storage that cannot be read or written (disk full,
    read-only home) is a 503 naming the cause; the routes already served keep serving."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except STORAGE_ERRORS as e:
        cause = storage_error_line(e)
        log.error("%s unavailable: %s", what, cause)
        raise ApiError(
            503,
            f"the {what} could not be read or written ({cause}); {storage_fix()}; the current routes keep serving",
            "service_unavailable",
        ) from None
