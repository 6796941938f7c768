"""Two vLLM engines "on other machines" behind one service (`--vllm-urls`): they have no access to the registry's
folder and fetch each routed adapter from the service's /artifacts through our resolver plugin; both hold
exactly the routed set, before and after a promotion, and share the traffic."""

from __future__ import annotations

import time

import pytest
import requests

from service.live import LiveServer, free_port
from service.vllm.adapters import content_id
from specialist.adapters import Registry
from tests.service.vllm.conftest import ARTIFACT_TOKEN, SERVE_ARGS, TASKS, TOKEN, start_engine

pytestmark = pytest.mark.slow


def _held(url: str) -> set[str]:
    models = requests.get(f"{url}/v1/models", timeout=10).json()["data"]
    return {m["id"] for m in models if m.get("parent")}


def _prompt_tokens(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("vllm:prompt_tokens_total")
    )


def _routed_ids(home) -> set[str]:
    return {content_id(v.path) for v in Registry(home).routes().values()}


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def two_engines(vllm_home, tmp_path_factory):
    logs = tmp_path_factory.mktemp("engines")
    service_port = free_port()
    env = {
        "SPECIALIST_ARTIFACTS_URL": f"http://127.0.0.1:{service_port}",
        "SPECIALIST_ARTIFACT_TOKEN": ARTIFACT_TOKEN,
    }
    ports = [free_port(), free_port()]
    engines = [
        start_engine(port, env | {"SPECIALIST_ADAPTER_CACHE": str(logs / f"cache{i}")}, logs / f"engine{i}.log")
        for i, port in enumerate(ports)
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for i, (url, engine) in enumerate(zip(urls, engines)):

            def up(url=url, engine=engine, log=logs / f"engine{i}.log") -> bool:
                assert engine.poll() is None, f"engine {url} exited: {log.read_text()[-2000:]}"
                try:
                    return requests.get(f"{url}/health", timeout=2).status_code == 200
                except requests.RequestException:
                    return False

            _wait(up, 400, f"engine {url}")
        server = LiveServer(
            vllm_home,
            TOKEN,
            [*SERVE_ARGS, *(arg for url in urls for arg in ("--vllm-urls", url))],
            env={"SPECIALIST_ARTIFACT_TOKEN": ARTIFACT_TOKEN},
            port=service_port,
            log=logs / "serve.log",
            ready_timeout=300,
        )
        with server:
            yield server, urls
    finally:
        for engine in engines:
            engine.terminate()
        for engine in engines:
            engine.wait(60)


def test_engines_elsewhere_fetch_and_hold_exactly_the_routed_set(two_engines):
    server, urls = two_engines
    routed = _routed_ids(server.home)
    assert len(routed) == len(TASKS)
    for url in urls:  # /readyz waited for this: every engine holds every routed adapter
        assert _held(url) == routed, url

    before = [_prompt_tokens(url) for url in urls]
    for task in TASKS:
        for text in ("good", "bad"):
            r = requests.post(f"{server.url}/predict", json={"task": task, "input": text}, timeout=120)
            assert r.status_code == 200 and r.json()["task"] == task, r.text
    assert all(_prompt_tokens(url) > b for url, b in zip(urls, before))  # both engines took requests

    for version in (1, 2):  # from v1 (earlier tests may have left v2 routed), to v2
        r = requests.post(
            f"{server.url}/admin/promote", json={"task": "sst2", "version": version}, headers=server.admin
        )
        assert r.status_code == 200 and r.json()["serving_version"] == version, r.text
    routed = _routed_ids(server.home)
    _wait(lambda: all(_held(url) == routed for url in urls), 30, "both engines to swap to the new champion")
    r = requests.post(f"{server.url}/predict", json={"task": "sst2", "input": "good"}, timeout=120)
    assert r.status_code == 200 and r.json()["adapter_version"] == 2

    r = requests.post(f"{server.url}/admin/rollback", json={"task": "sst2"}, headers=server.admin)
    assert r.status_code == 200 and r.json()["serving_version"] == 1, r.text
    routed = _routed_ids(server.home)
    _wait(lambda: all(_held(url) == routed for url in urls), 30, "both engines to roll back")


def test_artifacts_need_their_token_and_name_only_held_adapters(two_engines):
    server, _ = two_engines
    name = sorted(_routed_ids(server.home))[0]
    assert requests.get(f"{server.url}/artifacts/{name}", timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert requests.get(f"{server.url}/artifacts/{name}", headers=wrong, timeout=10).status_code == 403
    good = {"Authorization": f"Bearer {ARTIFACT_TOKEN}"}
    listing = requests.get(f"{server.url}/artifacts/{name}", headers=good, timeout=10).json()
    assert {f["name"] for f in listing["files"]} == {"adapter_config.json", "adapter_model.safetensors"}
    assert requests.get(f"{server.url}/artifacts/{name}/manifest.json", headers=good).status_code == 404
    assert requests.get(f"{server.url}/artifacts/sf-{'0' * 24}", headers=good).status_code == 404
    r = requests.get(f"{server.url}/artifacts/..sf-x", headers=good)  # not a content id: never a path
    assert r.status_code == 404 and "no adapter" in r.json()["error"]["message"], r.text
