"""Scoped keys: an inference, a request and an admin token, each for its own routes (service.http.Role)."""

import pytest

BODIES = {
    "/predict": {"task": "sentiment", "input": "a fine film", "parameters": {"max_new_tokens": 2}},
    "/v1/chat/completions": {"model": "sentiment", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2},
    "/generate": {"inputs": "x", "parameters": {"adapter_id": "sentiment", "max_new_tokens": 2}},
}


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path", sorted(BODIES))
def test_inference_needs_its_token_once_one_is_set(service, monkeypatch, path):
    assert service.post(path, json=BODIES[path]).status_code == 200  # unset: open, as before
    monkeypatch.setenv("SPECIALIST_INFERENCE_TOKEN", "infer-1")
    missing = service.post(path, json=BODIES[path])
    assert missing.status_code == 401 and "SPECIALIST_INFERENCE_TOKEN" in missing.text
    assert service.post(path, json=BODIES[path], headers=_bearer("nope")).status_code == 403
    assert service.post(path, json=BODIES[path], headers=_bearer("infer-1")).status_code == 200
    assert service.post(path, content=b"{not json", headers={"content-type": "application/json"}).status_code == 401
    assert service.get("/tasks").status_code == 401 and service.get("/openapi.json").status_code == 200


def test_the_request_token_submits_and_reads_jobs_but_does_not_administer(service, monkeypatch):
    monkeypatch.setenv("SPECIALIST_ADMIN_TOKEN", "admin-1")
    monkeypatch.setenv("SPECIALIST_REQUEST_TOKEN", "request-1")
    assert service.get("/specialists").status_code == 401
    assert service.get("/specialists", headers=_bearer("request-1")).status_code == 200
    assert service.get("/specialists", headers=_bearer("admin-1")).status_code == 200  # admin grants requests
    assert service.get("/specialists", headers=_bearer("infer-1")).status_code == 403
    refused = service.post("/admin/reload", headers=_bearer("request-1"))
    assert refused.status_code == 403 and "admin" in refused.json()["error"]["message"]
    assert service.post("/admin/reload", headers=_bearer("admin-1")).status_code == 200


def test_without_a_request_token_only_the_admin_token_opens_jobs(service, monkeypatch):
    monkeypatch.delenv("SPECIALIST_REQUEST_TOKEN", raising=False)
    monkeypatch.setenv("SPECIALIST_ADMIN_TOKEN", "admin-1")
    assert service.get("/specialists", headers=_bearer("admin-1")).status_code == 200
    monkeypatch.delenv("SPECIALIST_ADMIN_TOKEN")
    disabled = service.get("/specialists", headers=_bearer("admin-1"))
    assert disabled.status_code == 401 and "SPECIALIST_REQUEST_TOKEN" in disabled.text
