"""Two replicas on one PostgreSQL database serve one registry: a promotion or a rollback made through either
reaches both within 2 s (LISTEN/NOTIFY: the replicas poll only every 5 s here), under load, with no failed
request and no answer from another adapter than the one the response names."""

import threading
import time

import pytest

from tests.service.conftest import _alone
from tests.specialist.test_registry import _gated

ADMIN = {"Authorization": "Bearer s3cret"}
TEXT = "the film was lovely"


@pytest.fixture
def replicas(postgres_url, tmp_path, tiny_adapters, tiny_model_dir, monkeypatch):
    from fastapi.testclient import TestClient

    from service.app import ServiceState, create_app
    from service.config import ServeConfig
    from specialist.adapters import Registry

    monkeypatch.setenv("SPECIALIST_DATABASE_URL", postgres_url)
    monkeypatch.setenv("SPECIALIST_ADMIN_TOKEN", "s3cret")
    shared = Registry(tmp_path / "shared")  # the adapters' copies live here; both replicas read them
    shared.add(_gated(tiny_adapters["alpha"], tmp_path / "alpha"), "sentiment")
    shared.add(_gated(tiny_adapters["beta"], tmp_path / "beta"), "sentiment", promote=False)
    clients = []
    for i in range(2):
        config = ServeConfig(base_model=str(tiny_model_dir), max_wait_ms=20, poll_seconds=5)
        state = ServiceState(config, home=tmp_path / f"replica{i}")
        client = TestClient(create_app(state))
        client.__enter__()
        client.state = state
        clients.append(client)
    yield clients
    for client in clients:
        client.__exit__(None, None, None)
        client.state.close()


def _serves(client, version: int, deadline: float) -> float:
    """Seconds until `client`'s /tasks shows `version` for the task (fails after `deadline` seconds)."""
    started = time.monotonic()
    while time.monotonic() - started < deadline:
        tasks = client.get("/tasks").json()
        if [t["version"] for t in tasks["tasks"]] == [version]:
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"still not serving v{version} after {deadline} s: {tasks}")


def test_promotion_and_rollback_through_either_replica_reach_both_under_load(replicas):
    first, second = replicas
    expected = {1: _alone(first, "sentiment", TEXT, 4)}
    assert first.get("/tasks").json()["registry_version"] == second.get("/tasks").json()["registry_version"]
    answers: list[tuple[int, int | None, str]] = []
    stop = threading.Event()

    def load(client):
        while not stop.is_set():
            r = client.post("/predict", json={"task": "sentiment", "input": TEXT, "parameters": {"max_new_tokens": 4}})
            body = r.json()
            answers.append((r.status_code, body.get("adapter_version"), body.get("output")))

    threads = [threading.Thread(target=load, args=(c,)) for c in replicas for _ in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        promoted = first.post("/admin/promote", json={"task": "sentiment", "version": 2}, headers=ADMIN)
        assert promoted.status_code == 200, promoted.text
        promote_seconds = _serves(second, 2, deadline=4)
        expected[2] = _alone(second, "sentiment", TEXT, 4)
        time.sleep(0.5)
        rolled = second.post("/admin/rollback", json={"task": "sentiment"}, headers=ADMIN)
        assert rolled.status_code == 200, rolled.text
        rollback_seconds = _serves(first, 1, deadline=4)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert expected[1] != expected[2], "the two adapters must answer differently for the check to mean anything"
    print(f"promotion reached the other replica in {promote_seconds:.2f} s, rollback in {rollback_seconds:.2f} s")
    assert promote_seconds <= 2 and rollback_seconds <= 2, (promote_seconds, rollback_seconds)
    failed = [a for a in answers if a[0] != 200]
    wrong = [a for a in answers if a[0] == 200 and a[2] != expected[a[1]]]
    assert answers and not failed and not wrong, (failed[:3], wrong[:3])
    assert {a[1] for a in answers} == {1, 2}
    print(f"{len(answers)} answers under load, 0 failed, 0 from another adapter than the one named")
    versions = {c.get("/tasks").json()["registry_version"] for c in replicas}
    assert len(versions) == 1  # both replicas say they follow the same registry version
