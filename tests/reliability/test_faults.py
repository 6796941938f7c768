"""Faults, in process: a corrupt adapter promoted with --skip-gate while requests flow, and a registry that
cannot be written during a promotion. (The full fault matrix runs against a real server: `make reliability`.)"""

import os
import sqlite3
import threading
import time

import pytest

from reliability import badfiles
from tests.reliability.conftest import ADMIN, TASK, make_home, make_state, record


@pytest.fixture
def live(tmp_path, tiny_model_dir, tiny_adapters, admin_env, monkeypatch):
    from fastapi.testclient import TestClient

    from service.app import create_app

    home = make_home(tmp_path, tiny_adapters)
    monkeypatch.setenv("SPECIALIST_HOME", str(home))  # the CLI below works on this registry
    state = make_state(home, tiny_model_dir)
    with TestClient(create_app(state), raise_server_exceptions=False) as client:
        client.state = state
        yield client
    state.close()


class Traffic:
    """Closed-loop /predict clients on one task until stopped; every answer is kept."""

    def __init__(self, client, clients: int = 3):
        self.client, self.answers, self._stop = client, [], threading.Event()
        self.threads = [threading.Thread(target=self._loop) for _ in range(clients)]

    def _loop(self):
        while not self._stop.is_set():
            r = self.client.post(
                "/predict", json={"task": TASK, "input": "the plot was dull", "parameters": {"max_new_tokens": 4}}
            )
            self.answers.append((r.status_code, r.json()))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self.threads:
            t.join()


@pytest.mark.parametrize("defect", ["other-base-manifest", "wrong-dims"])
def test_a_corrupt_adapter_promoted_with_skip_gate_is_refused_while_the_champion_keeps_serving(
    live, tiny_adapters, tmp_path, defect, capsys
):
    from cli.main import main

    expected = live.post(
        "/predict", json={"task": TASK, "input": "the plot was dull", "parameters": {"max_new_tokens": 4}}
    ).json()
    build, _ = badfiles.ADAPTER_DEFECTS[defect]
    bad = build(tiny_adapters["beta"], tmp_path / "bad")
    with Traffic(live) as traffic:
        time.sleep(0.3)
        assert main(["registry", "add", str(bad), "--task", TASK, "--skip-gate"]) == 0  # the operator's override
        assert "v2" in capsys.readouterr().out
        deadline = time.time() + 10  # the poller (0.2 s) picks the new champion up, and refuses it
        while TASK not in live.get("/tasks").json()["refused"] and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
    refused = live.get("/tasks").json()["refused"]
    assert refused[TASK].startswith("v2: adapter"), refused
    assert len(traffic.answers) > 3
    assert {status for status, _ in traffic.answers} == {200}
    assert {(a["adapter_version"], a["output"]) for _, a in traffic.answers} == {(1, expected["output"])}
    assert live.state.ready() and live.get("/tasks").json()["tasks"][0]["version"] == 1
    record("fault", f"skip-gate-corrupt/{defect}", None)


def test_a_registry_that_cannot_be_written_is_a_clear_503_and_the_champion_keeps_serving(
    live, tiny_adapters, tmp_path, monkeypatch
):
    """Disk full or a read-only home during a promotion (simulated: the registry's write transaction fails as
    SQLite fails then). Before the fix this was a bare 500."""
    from tests.specialist.test_registry import _gated

    registry = live.state.registry
    registry.add(_gated(tiny_adapters["beta"], tmp_path / "beta2"), TASK, promote=False)
    for error in ("attempt to write a readonly database", "database or disk is full"):

        def failing(error=error):
            raise sqlite3.OperationalError(error)

        monkeypatch.setattr(registry, "_transaction", failing)
        for path, body in (("/admin/promote", {"task": TASK, "version": 2}), ("/admin/rollback", {"task": TASK})):
            r = live.post(path, json=body, headers=ADMIN)
            record(
                "fault", f"unwritable-registry/{path}/{error}", r.status_code, None if r.status_code == 503 else r.text
            )
            assert r.status_code == 503, r.text
            message = r.json()["error"]["message"]
            assert error in message and "$SPECIALIST_HOME" in message and "keep serving" in message
        answer = live.post("/predict", json={"task": TASK, "input": "x", "parameters": {"max_new_tokens": 2}})
        assert answer.status_code == 200 and answer.json()["adapter_version"] == 1
    monkeypatch.undo()
    assert live.post("/admin/promote", json={"task": TASK, "version": 2}, headers=ADMIN).json()["serving_version"] == 2


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root writes through file permissions; the live run uses a read-only mount"
)
def test_a_read_only_registry_home_is_a_clear_503(live, tiny_adapters, tmp_path):
    from tests.specialist.test_registry import _gated

    registry = live.state.registry
    registry.add(_gated(tiny_adapters["beta"], tmp_path / "beta2"), TASK, promote=False)
    paths = [registry.root, *registry.root.iterdir()]
    modes = {p: p.stat().st_mode for p in paths}
    try:
        for p in paths:
            p.chmod(0o555 if p.is_dir() else 0o444)
        r = live.post("/admin/promote", json={"task": TASK, "version": 2}, headers=ADMIN)
        assert r.status_code == 503 and "could not be read or written" in r.json()["error"]["message"], r.text
        assert live.post("/predict", json={"task": TASK, "input": "x"}).json()["adapter_version"] == 1
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def test_after_a_restart_a_refused_champion_leaves_the_previous_one_serving(
    tmp_path, tiny_model_dir, tiny_adapters, admin_env
):
    """Before the fix, a restart after a bad promotion served the task not at all (404): the previous
    champion was only kept by the process that had it loaded."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from specialist.adapters import Registry

    home = make_home(tmp_path, tiny_adapters)
    body = {"task": TASK, "input": "the plot was dull", "parameters": {"max_new_tokens": 4}}
    state = make_state(home, tiny_model_dir)
    with TestClient(create_app(state)) as client:
        expected = client.post("/predict", json=body).json()["output"]
    state.close()
    build, _ = badfiles.ADAPTER_DEFECTS["wrong-dims"]
    Registry(home).add(build(tiny_adapters["beta"], tmp_path / "bad"), TASK, skip_gate=True)  # v2, the champion
    restarted = make_state(home, tiny_model_dir)
    try:
        with TestClient(create_app(restarted)) as client:
            answer = client.post("/predict", json=body)
            tasks = client.get("/tasks").json()
            record(
                "fault",
                "restart-after-refused-champion",
                answer.status_code,
                None if answer.status_code == 200 else answer.text,
            )
            assert answer.status_code == 200 and (answer.json()["adapter_version"], answer.json()["output"]) == (
                1,
                expected,
            )
            assert tasks["refused"][TASK].startswith("v2: adapter") and restarted.ready()
            Registry(home).rollback(TASK)  # the operator rolls back: the refusal no longer concerns the champion
            client.post("/admin/reload", headers=ADMIN)
            assert client.get("/tasks").json()["refused"] == {}
    finally:
        restarted.close()


def test_readiness_does_not_wait_on_an_unreadable_registry(live, monkeypatch):
    """A read-only or full home can make every registry read fail or wait (SQLite's 30 s busy timeout): the
    readiness probe must still answer at once, from what the service serves. Before, /readyz hung and failed."""
    registry = live.state.registry

    def unreadable():
        time.sleep(5)
        raise sqlite3.OperationalError("unable to open database file")

    assert live.state.ready()
    monkeypatch.setattr(registry, "snapshot", unreadable)
    started = time.perf_counter()
    assert live.state.ready()
    assert time.perf_counter() - started < 1
    r = live.post("/predict", json={"task": TASK, "input": "x", "parameters": {"max_new_tokens": 2}})
    assert r.status_code == 200
    reload = live.post("/admin/reload", headers=ADMIN)  # an explicit re-read says what is wrong
    record(
        "fault", "unreadable-registry/reload", reload.status_code, None if reload.status_code == 503 else reload.text
    )
    assert reload.status_code == 503 and "unable to open database file" in reload.json()["error"]["message"]


def test_the_cli_reports_an_unwritable_registry_in_one_line(tmp_path, tiny_adapters, monkeypatch, capsys):
    """Found by the live fault run: `specialist registry add` on a read-only or full home printed a traceback."""
    from cli.main import main
    from specialist.adapters import Registry

    monkeypatch.setenv("SPECIALIST_HOME", str(tmp_path / "home"))

    def unwritable(self):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(Registry, "_transaction", unwritable)
    code = main(["registry", "add", str(tiny_adapters["alpha"]), "--task", "t", "--skip-gate"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("error:") and "readonly" in err and len(err.splitlines()) == 1
