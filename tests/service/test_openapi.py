"""The API describes itself: title, version and product text; every status a route can return with its dialect's
error body; the bearer scheme on the admin routes; and docs pages that load nothing from outside the server,
also behind BentoML (whose own index page embeds a tag manager script)."""

import re
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from service.api import ROUTERS
from service.app import ADMIN_PATHS, create_app
from service.openapi import ROUTE_ERRORS, TITLE

REPO = Path(__file__).resolve().parents[2]
SPEC = create_app(object()).openapi()  # the spec does not depend on the service's state
EXTERNAL = re.compile(r"""(?:https?:)?//[^\s"'<>]+""")


def _ref(spec_response: dict) -> str:
    return spec_response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]


def test_title_version_and_description():
    version = re.search(r'(?m)^version = "([^"]+)"', (REPO / "pyproject.toml").read_text()).group(1)
    assert SPEC["info"]["title"] == TITLE == "Specialist Factory"
    assert SPEC["info"]["version"] == version
    assert "LoRA" in SPEC["info"]["description"] and "/v1/chat/completions" in SPEC["info"]["description"]


def test_every_route_declares_its_statuses():
    routes = {(m, r.path) for router in ROUTERS for r in router.routes if isinstance(r, APIRoute) for m in r.methods}
    assert routes == set(ROUTE_ERRORS)  # a new route needs its entry; an entry without a route is stale
    for method, path in routes:
        responses = SPEC["paths"][path][method.lower()]["responses"]
        assert "500" in responses, (method, path)
        if method == "POST":
            assert {"400", "408", "413"} <= set(responses), (method, path)


@pytest.mark.parametrize("path", ["/predict", "/v1/chat/completions", "/v1/completions"])
def test_generation_routes_declare_404_and_422_in_openai_shape(path):
    responses = SPEC["paths"][path]["post"]["responses"]
    assert _ref(responses["404"]) == _ref(responses["422"]) == "OpenAIError"
    assert "model_not_found" in responses["404"]["description"]
    detail = SPEC["components"]["schemas"]["OpenAIErrorDetail"]["properties"]
    assert set(detail) == {"message", "type", "param", "code"}
    assert "HTTPValidationError" not in SPEC["components"]["schemas"]  # FastAPI's default 422 body is not ours


@pytest.mark.parametrize("path", ["/generate", "/generate_stream", "/"])
def test_tgi_routes_declare_tgi_errors(path):
    responses = SPEC["paths"][path]["post"]["responses"]
    assert _ref(responses["404"]) == _ref(responses["422"]) == "TGIError"
    assert set(SPEC["components"]["schemas"]["TGIError"]["properties"]) == {"error", "error_type"}


def test_each_route_declares_its_roles_bearer_scheme():
    """Inference routes: inferenceToken; specialist jobs: requestToken; admin: adminToken; adapter files for
    engines: artifactToken; the rest: none."""
    from service.http import ADMIN, ARTIFACTS, INFERENCE, REQUEST, route_role

    names = {INFERENCE: "inferenceToken", REQUEST: "requestToken", ADMIN: "adminToken", ARTIFACTS: "artifactToken"}
    for name in names.values():
        scheme = SPEC["components"]["securitySchemes"][name]
        assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    roles = {(m, r.path): route_role(r) for router in ROUTERS for r in router.routes for m in r.methods}
    assert {role for role in roles.values()} == {INFERENCE, REQUEST, ADMIN, ARTIFACTS}
    guarded = [key for key, role in roles.items() if role not in (None, INFERENCE)]
    assert all(any(p == a or p.startswith(a + "/") for a in ADMIN_PATHS) for _, p in guarded)
    for path, methods in SPEC["paths"].items():
        for method, operation in methods.items():
            role = roles.get((method.upper(), path))
            expected = [{names[role]: []}] if role else None
            assert operation.get("security") == expected, (method, path)
            if role:
                assert {"401", "403"} <= set(operation["responses"])


def test_declared_error_bodies_are_what_the_server_sends(service):
    detail = set(SPEC["components"]["schemas"]["OpenAIErrorDetail"]["properties"])
    for path, body in (
        ("/predict", {"task": "nope", "input": "y"}),
        ("/v1/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "y"}]}),
    ):
        r = service.post(path, json=body)
        assert (
            r.status_code == 404 and set(r.json()["error"]) == detail and r.json()["error"]["code"] == "model_not_found"
        )
        r = service.post(path, json=body | {"nonsense": 1})
        assert r.status_code == 422 and set(r.json()["error"]) == detail
    r = service.post("/generate", json={"inputs": "y", "parameters": {"adapter_id": "nope"}})
    assert r.status_code == 404 and set(r.json()) == set(SPEC["components"]["schemas"]["TGIError"]["properties"])
    assert service.post("/admin/reload").status_code == 401


def _pages_and_assets(client: TestClient) -> None:
    """Every docs page: no URL outside the server in its HTML, and every local asset it names is served."""
    assert client.get("/", follow_redirects=False).headers["location"] == "/docs"
    for page in ("/", "/docs", "/redoc", "/docs/oauth2-redirect"):
        r = client.get(page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), page
        assert EXTERNAL.findall(r.text) == [], page
        for asset in re.findall(r"""(?:src|href)=["']([^"']+)["']""", r.text):
            assert client.get(asset).status_code == 200, asset
    assert client.get("/openapi.json").json()["info"]["title"] == TITLE


def test_docs_pages_load_nothing_from_outside():
    _pages_and_assets(TestClient(create_app(object())))


def test_behind_bentoml_our_pages_answer_not_its_index_with_a_tag_manager():
    from service.bento import SpecialistService

    app = SpecialistService.to_asgi(is_main=True)  # as `bentoml serve` mounts it (the worker is not started)
    _pages_and_assets(TestClient(app))


def test_declared_success_bodies_are_what_the_server_sends(service):
    """The spec's 200 models forbid unknown keys: every real answer validates, so spec and server agree."""
    from service.api.schemas import SUCCESS

    chat = [{"role": "user", "content": "a fine film"}]
    sent = {
        ("POST", "/predict"): {"task": "sentiment", "input": "a fine film", "parameters": {"max_new_tokens": 3}},
        ("GET", "/tasks"): None,
        ("POST", "/generate"): {
            "inputs": "a fine film",
            "parameters": {
                "adapter_id": "sentiment",
                "max_new_tokens": 3,
                "details": True,
                "top_n_tokens": 2,
                "decoder_input_details": True,
            },
        },
        ("POST", "/v1/completions"): {"model": "sentiment", "prompt": "x", "max_tokens": 3, "logprobs": 1, "n": 2},
        ("POST", "/v1/chat/completions"): {
            "model": "sentiment",
            "messages": chat,
            "max_tokens": 3,
            "logprobs": True,
            "top_logprobs": 1,
        },
        ("GET", "/v1/models"): None,
    }
    assert set(sent) == set(SUCCESS)
    for (method, path), body in sent.items():
        r = service.request(method, path, json=body)
        assert r.status_code == 200, (path, r.text)
        SUCCESS[(method, path)].model_validate(r.json())
        assert "200" in SPEC["paths"][path][method.lower()]["responses"]
    SUCCESS[("POST", "/generate")].model_validate(
        service.post("/generate", json={"inputs": "x", "parameters": {"adapter_id": "sentiment"}}).json()
    )
