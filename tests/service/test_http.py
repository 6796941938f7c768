"""The shared HTTP plumbing (service/http.py): bad input is a 4xx with a message; bodies are limited."""

import pytest


@pytest.mark.parametrize(
    "body, status",
    [
        ("{not json", 400),
        ({"task": "sentiment"}, 422),
        ({"task": "sentiment", "input": 5}, 422),
        ({"task": "sentiment", "input": "x", "parameters": {"max_new_tokens": 0}}, 422),
        ({"task": "sentiment", "input": "x", "parameters": {"max_new_tokens": 100000}}, 422),
        ({"task": "sentiment", "input": "x", "parameters": {"temperature": -1}}, 422),
        ({"task": "sentiment", "input": "x", "parameters": {"top_p": 0}}, 422),
        ({"task": "sentiment", "input": "word " * 5000}, 413),
        ({"task": "../etc", "input": "x"}, 404),
    ],
)
def test_bad_requests_are_4xx_with_a_message(service, body, status):
    json_header = {"content-type": "application/json"}
    r = (
        service.post("/predict", content=body, headers=json_header)
        if isinstance(body, str)
        else service.post("/predict", json=body)
    )
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]


def test_body_size_limit(service):
    r = service.post("/predict", content=b"x" * 2_000_000, headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_chunked_bodies_are_limited_too(service):
    def chunks():
        for _ in range(40):
            yield b"x" * 50_000  # 2 MB without a Content-Length

    r = service.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_admin_paths_are_derived_from_the_routes_that_require_the_token():
    from fastapi import APIRouter, Depends

    from service.app import ADMIN_PATHS
    from service.http import admin_prefixes, require_admin

    assert ADMIN_PATHS == ("/admin", "/artifacts", "/specialists", "/uploads")
    guarded, public = APIRouter(dependencies=[Depends(require_admin)]), APIRouter()
    guarded.post("/ops/restart")(lambda: None)
    guarded.get("/ops/{item}")(lambda item: None)
    public.get("/opsdashboard")(lambda: None)  # shares a prefix string, not the path segment
    assert admin_prefixes([*guarded.routes, *public.routes]) == ("/ops",)
    per_route = APIRouter()
    per_route.get("/keys", dependencies=[Depends(require_admin)])(lambda: None)  # declared on the route itself
    assert admin_prefixes(per_route.routes) == ("/keys",)


def test_a_public_route_under_an_admin_path_is_refused():
    from fastapi import APIRouter, Depends

    from service.http import admin_prefixes, require_admin

    router = APIRouter()
    router.post("/ops/restart", dependencies=[Depends(require_admin)])(lambda: None)
    router.get("/ops/status")(lambda: None)
    with pytest.raises(RuntimeError, match="/ops/status"):
        admin_prefixes(router.routes)
