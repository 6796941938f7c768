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
import sqlite3
from collections.abc import Callable, Iterable
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute

from service.config import admin_token
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
    if path in TGI_PATHS or (path == "/" and method == "POST"):
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


def check_admin_header(header: str) -> None:
    token = admin_token()
    if not token:
        raise ApiError(401, "admin API disabled: set SPECIALIST_ADMIN_TOKEN on the server", "authentication_error")
    if not header.lower().startswith("bearer "):
        raise ApiError(
            401, "missing bearer token: send Authorization: Bearer <SPECIALIST_ADMIN_TOKEN>", "authentication_error"
        )
    if not hmac.compare_digest(header[7:].strip().encode(), token.encode()):  # constant time
        raise ApiError(403, "wrong admin token", "permission_error")


# Declares the admin token in the OpenAPI spec: a bearer scheme on every route that requires it. It never refuses by
# itself (auto_error=False); `check_admin_header` decides, with the same answer as the middleware.
ADMIN_BEARER = HTTPBearer(
    scheme_name="adminToken",
    description="SPECIALIST_ADMIN_TOKEN, sent as `Authorization: Bearer <token>`",
    auto_error=False,
)


async def require_admin(
    request: Request, _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(ADMIN_BEARER)]
) -> None:
    """The dependency an admin route declares; `admin_prefixes` finds those routes by it (async: no thread hop)."""
    check_admin_header(request.headers.get("authorization", ""))


def requires_admin(route: APIRoute) -> bool:
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        if dependant.call is require_admin:
            return True
        pending.extend(dependant.dependencies)
    return False


def admin_prefixes(routes: Iterable[BaseRoute]) -> tuple[str, ...]:
    """The top-level path segments of the routes that declare `require_admin`: the middleware guards everything
    under them (an unknown /admin/x is 401 too, not a 404 that confirms the path space). A public route under
    one of them would be guarded by mistake, so that is refused here."""
    routes = [r for r in routes if isinstance(r, APIRoute)]
    prefixes = tuple(sorted({"/" + r.path.split("/")[1] for r in routes if requires_admin(r)}))
    public = [r.path for r in routes if not requires_admin(r) and under(r.path, prefixes)]
    if public:
        raise RuntimeError(
            f"public routes {public} lie under the admin paths {prefixes}: move them or declare require_admin"
        )
    return prefixes


def under(path: str, prefixes: Iterable[str]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


class AdminAuth:
    """401/403 on the admin paths before anything else reads the request: an unauthenticated client learns
    nothing about bodies (no 400/413/422) and costs no parsing. The routes check the token again (`require_admin`)."""

    def __init__(self, app, prefixes: tuple[str, ...]):
        self.app, self.prefixes = app, prefixes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope["path"].removeprefix(scope.get("root_path", "")) or "/"
            if under(path, self.prefixes):
                header = dict(scope.get("headers", [])).get(b"authorization", b"").decode("latin-1")
                try:
                    check_admin_header(header)
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
    except (sqlite3.Error, OSError) as e:
        log.error("%s unavailable: %s", what, e)
        raise ApiError(
            503,
            f"the {what} could not be read or written ({e}); check free space and permissions of "
            "$SPECIALIST_HOME; the current routes keep serving",
            "service_unavailable",
        ) from None
