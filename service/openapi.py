"""What the API says about itself: title, version and product description; every status code each route can
return, with the error body its dialect uses; and the docs pages.

The docs (Swagger UI at /docs, ReDoc at /redoc) load their scripts from the installed `fastapi-offline` package
(Swagger UI 5, which renders the OpenAPI 3.1 that FastAPI writes, and ReDoc), served under /docs/assets: they work
offline, and no page we serve loads a third-party script. BentoML's own index page at GET / embeds a Google Tag
Manager script; the app answers GET / itself (a redirect to /docs), and BentoML's mount gives the app's routes
precedence over its own.

The statuses come from service/http.py (the shared limits and errors) and the routes' own errors; a route
added without an entry in `ROUTE_ERRORS` fails the tests.
"""

from __future__ import annotations

import importlib.metadata

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field

import specialist
from service.api.schemas import SUCCESS
from service.http import Role

TITLE = "Specialist Factory"
DOCS_ASSETS = "/docs/assets"
DESCRIPTION = """Task specialists (LoRA adapters on one base model) behind one API, in three dialects.

- **Native:** `POST /predict` with a task name and the task input; the service renders the adapter's own prompt.
  `GET /tasks` lists the served tasks, their versions and gate scores, and the adapters that were refused.
- **OpenAI-compatible:** `/v1/completions`, `/v1/chat/completions` and `/v1/models`; the model is the task name.
- **TGI-compatible:** `/generate`, `/generate_stream` and `POST /` (which `huggingface_hub.InferenceClient` uses);
  the `adapter_id` is the task name, and a request without a served one is a 404, never a base-model answer.
  `POST /tgi/{task}` is a base URL per task, for the `text-generation` client, which cannot name an adapter.
- **Specialists** (bearer `SPECIALIST_REQUEST_TOKEN`, or the admin token): request a new specialist (train,
  evaluate, gate, serve) with `POST /specialists` and follow its job, its events and checkpoints.
- **Admin** (bearer `SPECIALIST_ADMIN_TOKEN`): promote, roll back and reload routes under `/admin`.
- **Artifacts** (bearer `SPECIALIST_ARTIFACT_TOKEN`, or the admin token): the adapter files that vLLM engines on
  other machines download (backend `vllm` with `--vllm-urls`).
- Inference routes need `SPECIALIST_INFERENCE_TOKEN` as a bearer token when the server sets it (else they are open).

Errors are JSON in the dialect's shape: `{"error": {"message", "type", "param", "code"}}` (OpenAI's, also used by
the native and admin routes) or `{"error", "error_type"}` on the TGI routes. A field that a real server would honour
but this one does not is a 422 naming it; nothing is silently ignored. The server also answers `/livez`, `/readyz`
and `/metrics` (Prometheus)."""


class OpenAIErrorDetail(BaseModel):
    message: str = Field(description="one line: the problem and how to fix it")
    type: str = Field(description="e.g. invalid_request_error, authentication_error, not_found_error, server_error")
    param: str | None = Field(None, description="the request field at fault, when one is")
    code: str | None = Field(None, description="model_not_found for an unknown task")


class OpenAIError(BaseModel):
    """The error body of the native, OpenAI-compatible, specialist and admin routes."""

    error: OpenAIErrorDetail


class TGIError(BaseModel):
    """The error body of the TGI-compatible routes."""

    error: str = Field(description="one line: the problem and how to fix it")
    error_type: str


_MEANING = {
    400: "Malformed JSON, a body the client stopped sending, or a request that cannot be run as sent.",
    401: "No bearer token, or the role's API is disabled (its token unset on the server).",
    403: "Wrong token for the role.",
    404: "Not found.",
    408: "The body did not arrive within the body timeout.",
    409: "Conflict.",
    413: "Body over the size limit.",
    422: "A field is invalid, out of range, unknown, or not implemented here; the message names it.",
    500: "A bug: logged with its traceback on the server.",
    502: "The remote generation engine failed (TGI backend).",
    503: "Temporarily unavailable; retry.",
}
_GENERATION = {
    400: _MEANING[400],
    404: "Unknown task (code model_not_found), or a task whose adapter was refused (the message says why).",
    413: "Body over the size limit, or a prompt longer than max_input_tokens after rendering.",
    422: _MEANING[422] + " Also max_new_tokens above the cap.",
    502: _MEANING[502],
    503: "The task's adapter is being swapped, or no engine holds it right now (one is restarting); retry.",
}
_STORAGE = {503: "The registry or job store cannot be read or written (disk full, read-only home)."}
# (method, path) -> the statuses of that route's own errors, beyond the shared ones (`responses_for`).
ROUTE_ERRORS: dict[tuple[str, str], dict[int, str]] = {
    ("POST", "/predict"): _GENERATION,
    ("GET", "/tasks"): {},
    ("GET", "/v1/models"): {},
    ("POST", "/v1/completions"): _GENERATION,
    ("POST", "/v1/chat/completions"): _GENERATION,
    ("POST", "/generate"): _GENERATION,
    ("POST", "/generate_stream"): _GENERATION,
    ("POST", "/"): _GENERATION,
    ("POST", "/tgi/{task}"): _GENERATION,
    ("GET", "/info"): {},
    ("POST", "/admin/promote"): {400: "The task or version cannot be promoted.", 404: "No such version."} | _STORAGE,
    ("POST", "/admin/rollback"): {400: "No earlier champion to roll back to."} | _STORAGE,
    ("POST", "/admin/reload"): _STORAGE,
    ("POST", "/uploads"): {
        400: "The upload is not UTF-8 text or not valid JSON/JSONL.",
        413: "Upload over max_upload_bytes.",
        422: "A record lacks input or output, or there are none.",
    }
    | _STORAGE,
    ("POST", "/specialists"): {
        404: "Unknown SuperNI task (with near matches) or upload_id.",
        409: "A job for the same task is already queued or running.",
        422: _MEANING[422] + " Also too few instances, or gate overrides that loosen the operator's policy.",
    }
    | _STORAGE,
    ("GET", "/specialists"): _STORAGE,
    ("GET", "/specialists/{job_id}"): {404: "No such job."} | _STORAGE,
    ("DELETE", "/specialists/{job_id}"): {404: "No such job."} | _STORAGE,
    ("GET", "/specialists/{job_id}/events"): {404: "No such job.", 422: "after or limit out of range."} | _STORAGE,
    ("GET", "/specialists/{job_id}/checkpoints"): {404: "No such job."} | _STORAGE,
    ("GET", "/artifacts/{name}"): {404: "No adapter of that content id is held by this service's engines."},
    ("GET", "/artifacts/{name}/{file}"): {404: "No such adapter, or a file that is not one of its artifacts."},
}
TGI_ROUTES = {("POST", "/generate"), ("POST", "/generate_stream"), ("POST", "/"), ("POST", "/tgi/{task}")}
_OR_STREAM = "JSON; server-sent events when `stream` is true (an error after the first event comes in-band)."
STREAMING = {
    ("POST", "/generate_stream"): "Server-sent events: one per token; the last carries the details.",
    ("POST", "/"): _OR_STREAM,
    ("POST", "/tgi/{task}"): _OR_STREAM,
    ("POST", "/v1/completions"): _OR_STREAM,
    ("POST", "/v1/chat/completions"): _OR_STREAM,
}


def package_version() -> str:
    try:
        return importlib.metadata.version("specialist-factory")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return specialist.__version__


def new_app() -> FastAPI:
    """The FastAPI app with its description, docs pages on local assets, and GET / answered by us."""
    app = FastAPIOffline(
        title=TITLE,
        version=package_version(),
        description=DESCRIPTION,
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None},  # never ask swagger.io to validate the spec
    )

    @app.get("/", summary="The API docs", response_class=RedirectResponse, status_code=307)
    async def index(request: Request):
        """Redirects to /docs. (BentoML's own index page, which this replaces, embeds a third-party script.)"""
        return RedirectResponse(f"{request.scope.get('root_path', '')}/docs", status_code=307)

    return app


def responses_for(method: str, path: str, role: Role | None, validates: bool) -> dict[int | str, dict]:
    """The OpenAPI `responses` of one route: the shared limits and errors, its role's token's, and its own."""
    key = (method, path)
    errors: dict[int, str] = {500: _MEANING[500]}
    if method in ("POST", "PUT", "PATCH"):  # service.http.BodyLimit reads every such body first
        errors |= {400: _MEANING[400], 408: _MEANING[408], 413: _MEANING[413]}
    if validates:
        errors[422] = _MEANING[422]
    if role is not None:
        envs = " or ".join(role.token_envs)
        unset = " (open while it is unset)" if role.open_when_unset else ""
        errors |= {401: f"{_MEANING[401]} The {role.name} role: {envs}{unset}.", 403: _MEANING[403]}
    errors |= ROUTE_ERRORS[key]
    model = TGIError if key in TGI_ROUTES else OpenAIError
    responses: dict[int | str, dict] = {
        status: {"description": text, "model": model} for status, text in sorted(errors.items())
    }
    if key in SUCCESS:
        responses[200] = {"description": "Success.", "model": SUCCESS[key]}
    if key in STREAMING:
        streamed = {"text/event-stream": {}}
        responses[200] = responses.get(200, {}) | {"description": STREAMING[key], "content": streamed}
    return responses
