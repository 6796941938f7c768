"""The HTTP API fuzzed from its own OpenAPI schema (schemathesis): every operation, with and without the token.

For each operation, schemathesis generates schema-valid (positive) and schema-violating (negative) requests;
half of the valid ones name a served task, so generation runs too. Every answer must be below 500, every
error must carry a message, the admin operations must answer 401 without a token, and no request may read or
write a file outside the service's homes.
"""

import hashlib
import json
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from service.app import ADMIN_PATHS, create_app
from service.client import error_message
from tests.reliability.conftest import ADMIN, TASK, allowed_roots, record

# Per operation, generation mode and token setting (~500 distinct requests in all, ~10 s); `make reliability` asks for more.
EXAMPLES = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "12"))
SCHEMA = create_app(object()).openapi()  # the schema does not depend on the service's state
OPERATIONS = [(method.upper(), path) for path, methods in SCHEMA["paths"].items() for method in methods]


def _is_admin(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in ADMIN_PATHS)


def _route_to_served_task(case) -> None:
    """Point half of the valid bodies at a served task, so the fuzzer reaches generation, not only 404s."""
    body = case.body
    if not isinstance(body, dict) or int(hashlib.sha1(repr(body).encode()).hexdigest(), 16) % 2:
        return
    for key in ("task", "model"):
        if isinstance(body.get(key), str):
            body[key] = TASK
    if isinstance(body.get("parameters"), dict) and "adapter_id" in body["parameters"]:
        body["parameters"]["adapter_id"] = TASK


def _case_id(case, auth: str) -> str:
    body = case.body if not isinstance(case.body, bytes) else case.body.hex()
    raw = json.dumps([case.method, case.formatted_path, case.query, body, auth], default=repr, sort_keys=True)
    return hashlib.sha1(raw.encode()).hexdigest()[:16]


def test_every_route_is_fuzzed():
    from starlette.routing import Route

    routes = {(m, r.path) for r in create_app(object()).routes if isinstance(r, Route) for m in r.methods - {"HEAD"}}
    docs = {("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"), ("GET", "/redoc")}
    catch_all = {(m, "/{path:path}") for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}  # unknown paths
    assert routes - docs - catch_all == set(OPERATIONS)


@pytest.mark.parametrize("auth", ["token", "no-token"])
@pytest.mark.parametrize("method, path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzzed_requests_never_get_a_server_error(rel_service, file_watch, method, path, auth):
    app = rel_service.app_
    operation = schemathesis.openapi.from_dict(SCHEMA)[path][method]
    headers = ADMIN if auth == "token" else {}
    failures, seen = [], set()

    def check(case) -> None:
        if case.body is not None and not isinstance(case.body, (bytes, str)):
            _route_to_served_task(case)
        if auth == "no-token" and case.headers:  # the spec's bearer scheme makes schemathesis send made-up tokens
            for name in [h for h in case.headers if h.lower() == "authorization"]:
                del case.headers[name]
        response = case.call(app=app, headers=headers)
        problem = None
        if response.status_code >= 500:
            problem = f"{response.status_code}: {response.content[:300]!r}"
        elif auth == "no-token" and _is_admin(path) and response.status_code != 401:
            problem = f"admin operation answered {response.status_code} without a token"
        elif response.status_code >= 400:
            try:
                message = error_message(json.loads(response.content))
                assert isinstance(message, str) and message.strip()
            except (ValueError, AssertionError):
                problem = f"{response.status_code} without an error message: {response.content[:200]!r}"
        case_id = _case_id(case, auth)
        seen.add(case_id)
        record("fuzz", case_id, response.status_code, problem)
        if problem:
            failures.append(f"{problem}\n    reproduce: {case.as_curl_command(headers=headers)}")

    file_watch.active = True
    try:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run = settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(given(case=operation.as_strategy(generation_mode=mode))(check))
            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # an operation without parameters has no invalid form
    finally:
        file_watch.active = False
    assert not failures, f"{len(failures)} of {len(seen)} fuzzed requests failed:\n" + "\n".join(failures[:10])
    reads, writes = allowed_roots(rel_service.state)
    outside = file_watch.outside(reads, writes)
    assert not outside, "files touched outside the service's homes:\n" + "\n".join(outside[:20])
