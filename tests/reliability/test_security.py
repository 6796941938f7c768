"""Security: the admin token guards every admin route (401/403, constant-time), names never become paths outside
the homes, adapters load only from safetensors, the token never reaches a log or a job, the container is
not root."""

import base64
import json
import logging
import re

import pytest
from starlette.routing import Route

from reliability.cases import hostile_cases
from service.app import ADMIN_PATHS, create_app
from tests.reliability.conftest import ADMIN, TASK, TOKEN, allowed_roots, record

PUBLIC = {
    "/predict",
    "/tasks",
    "/v1/models",
    "/v1/completions",
    "/v1/chat/completions",
    "/generate",
    "/generate_stream",
    "/tgi/{task}",
    "/",
    "/info",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/{path:path}",  # the catch-all that answers an unknown path or method with a JSON error
}
ROUTES = sorted((m, r.path) for r in create_app(object()).routes if isinstance(r, Route) for m in r.methods - {"HEAD"})
PROTECTED = [(m, p) for m, p in ROUTES if p not in PUBLIC]
JOB = "0" * 32


def _url(path: str) -> str:
    return path.replace("{job_id}", JOB).replace("{name}", "sf-" + "0" * 24).replace("{file}", "adapter_config.json")


def test_every_route_is_public_by_intent_or_protected():
    assert PROTECTED and all(any(p == a or p.startswith(a + "/") for a in ADMIN_PATHS) for _, p in PROTECTED), PROTECTED
    assert {p for _, p in PROTECTED} == {
        "/admin/promote",
        "/admin/rollback",
        "/admin/reload",
        "/uploads",
        "/specialists",
        "/specialists/{job_id}",
        "/specialists/{job_id}/events",
        "/specialists/{job_id}/checkpoints",
        "/artifacts/{name}",
        "/artifacts/{name}/{file}",
    }


BAD_HEADERS = {
    "missing": ({}, 401),
    "empty": ({"Authorization": ""}, 401),
    "bearer-only": ({"Authorization": "Bearer"}, 401),
    "bearer-empty": ({"Authorization": "Bearer "}, 403),
    "basic-scheme": ({"Authorization": "Basic " + base64.b64encode(f"admin:{TOKEN}".encode()).decode()}, 401),
    "token-without-scheme": ({"Authorization": TOKEN}, 401),
    "wrong": ({"Authorization": "Bearer wrong"}, 403),
    "prefix-of-token": ({"Authorization": f"Bearer {TOKEN[:-1]}"}, 403),
    "token-plus-one": ({"Authorization": f"Bearer {TOKEN}x"}, 403),
    "token-twice": ({"Authorization": f"Bearer {TOKEN} {TOKEN}"}, 403),
    "upper-case-token": ({"Authorization": f"Bearer {TOKEN.upper()}"}, 403),
    "non-ascii": ({"Authorization": "Bearer t\u00f6ken".encode("latin-1")}, 403),
    "token-in-query-only": ({}, 401),
    "x-api-key-header": ({"X-API-Key": TOKEN}, 401),
}


@pytest.mark.parametrize("label", sorted(BAD_HEADERS))
@pytest.mark.parametrize("method, path", PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
def test_admin_routes_refuse_missing_and_wrong_tokens(rel_service, method, path, label):
    headers, status = BAD_HEADERS[label]
    url = _url(path) + (f"?token={TOKEN}" if label == "token-in-query-only" else "")
    # A body that would be valid and one that is garbage: the token is judged first, either way.
    for body in (b'{"task": "sentiment", "version": 1}', b"{garbage"):
        r = rel_service.request(method, url, content=body, headers={"content-type": "application/json", **headers})
        record(
            "security",
            f"auth/{method} {path}/{label}/{body[:3]!r}",
            r.status_code,
            None if r.status_code == status else r.text,
        )
        assert r.status_code == status, (label, r.status_code, r.text)
        assert r.json()["error"]["message"] and TOKEN not in r.text


def test_a_lower_case_scheme_and_surrounding_spaces_are_accepted(rel_service):
    assert rel_service.post("/admin/reload", headers={"Authorization": f"bearer  {TOKEN} "}).status_code == 200


def test_without_a_configured_token_the_admin_api_is_closed(rel_service, monkeypatch):
    monkeypatch.delenv("SPECIALIST_ADMIN_TOKEN")
    for method, path in PROTECTED:
        r = rel_service.request(method, _url(path), headers=ADMIN)
        assert r.status_code == 401 and "disabled" in r.json()["error"]["message"], (method, path)


def test_the_token_is_compared_in_constant_time(rel_service, monkeypatch):
    import service.http

    calls = []
    real = service.http.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(service.http.hmac, "compare_digest", spy)
    assert rel_service.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert rel_service.post("/admin/reload", headers=ADMIN).status_code == 200
    assert (b"wrong", TOKEN.encode()) in calls and (TOKEN.encode(), TOKEN.encode()) in calls


def test_rejected_admin_requests_change_nothing(rel_service):
    state = rel_service.state
    routes = {t: v.version for t, v in state.registry.routes().items()}
    uploads = state.jobs.root / "uploads"
    before = set(uploads.glob("*")) if uploads.exists() else set()
    wrong = {"Authorization": "Bearer wrong"}
    rel_service.post("/admin/promote", json={"task": TASK, "version": 1}, headers=wrong)
    rel_service.post("/admin/rollback", json={"task": TASK}, headers=wrong)
    rel_service.post("/uploads", content=b'{"input": "x", "output": "y"}\n', headers=wrong)
    rel_service.post("/specialists", json={"task": "sneaky", "superni_task": "task900_toy_sentiment"}, headers=wrong)
    assert {t: v.version for t, v in state.registry.routes().items()} == routes
    assert (set(uploads.glob("*")) if uploads.exists() else set()) == before
    assert not [j for j in state.jobs.list() if j.task == "sneaky"]


def test_no_name_taking_endpoint_touches_a_path_outside_the_homes(rel_service, file_watch, rel_root):
    """Every hostile name, on every endpoint that takes one, under a watch of all file-system calls."""
    secret = rel_root / "outside" / "secret.json"
    secret.parent.mkdir(exist_ok=True)
    secret.write_text("{}")
    cases = [c for c in hostile_cases(TASK, TOKEN) if c.category in ("names", "unicode")]
    extra = [{"task": "../outside/secret", "input": "x"}, {"task": str(secret), "input": "x"}]
    file_watch.events.clear()
    file_watch.active = True
    try:
        for case in cases:
            assert (
                rel_service.request(case.method, case.path, content=case.body, headers=case.headers).status_code < 500
            ), case.id
        for body in extra:
            assert rel_service.post("/predict", json=body).status_code == 404
            r = rel_service.post("/specialists", json={"task": "fresh", "superni_task": body["task"]}, headers=ADMIN)
            assert r.status_code in (404, 422)
            r = rel_service.post("/admin/promote", json={"task": body["task"], "version": 1}, headers=ADMIN)
            assert r.status_code in (400, 422)
    finally:
        file_watch.active = False
    assert file_watch.events, "the watch saw nothing: it would not see a traversal either"
    reads, writes = allowed_roots(rel_service.state)
    outside = file_watch.outside(reads, writes)
    assert not outside, "\n".join(outside[:20])
    assert not any("outside" in path or "passwd" in path for _, path, _ in file_watch.events)


def test_the_registry_keeps_only_safetensors_and_json(tiny_adapters, tmp_path):
    from specialist.adapters import Registry

    src = tmp_path / "src"
    import shutil

    shutil.copytree(tiny_adapters["alpha"], src)
    for name in ("adapter_model.bin", "extra.pt", "weights.pkl", "run.py", "model.ckpt"):
        (src / name).write_bytes(b"not to be copied")
    version = Registry(tmp_path / "home").add(src, "t", skip_gate=True)
    assert {p.suffix for p in version.path.iterdir()} <= {".json", ".safetensors", ".jsonl", ".md"}


def test_the_token_never_reaches_a_log_a_response_or_a_job(rel_service, caplog):
    caplog.set_level(logging.DEBUG)
    bodies = []
    for headers in (ADMIN, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {TOKEN}x"}, {}):
        for method, path, body in [
            ("POST", "/admin/reload", None),
            ("GET", "/specialists", None),
            ("POST", "/admin/promote", {"task": "nope", "version": 1}),
            ("POST", "/specialists", {"task": "t", "superni_task": "nope"}),
            ("POST", "/predict", {"task": "nope", "input": "x"}),
        ]:
            r = rel_service.request(method, path, json=body, headers=headers)
            bodies.append(r.text)
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert TOKEN not in logged and not any(TOKEN in b for b in bodies)
    assert "SPECIALIST_ADMIN_TOKEN" not in rel_service.state.worker.env  # the training process does not get it


def test_the_container_runs_as_a_non_root_user():
    from tests.conftest import REPO

    lines = [ln.strip() for ln in (REPO / "Dockerfile").read_text().splitlines()]
    users = [ln.split(None, 1)[1] for ln in lines if ln.startswith("USER ")]
    assert users, "no USER instruction: the container would run as root"
    final = users[-1]
    assert final not in ("0", "root") and not final.startswith(("0:", "root:")), final
    cmd = max(i for i, ln in enumerate(lines) if ln.startswith(("CMD", "ENTRYPOINT")))
    assert max(i for i, ln in enumerate(lines) if ln.startswith("USER ")) < cmd
    assert re.fullmatch(r"\d+", final) and int(final) >= 1000, "a numeric uid (Kubernetes runAsNonRoot checks it)"
    assert "SPECIALIST_ADMIN_TOKEN" not in json.dumps([ln for ln in lines if ln.startswith(("ENV", "ARG"))])
