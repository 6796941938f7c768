"""Specialist requests through the API: submit -> poll -> promoted -> served, and every way it can go wrong."""

import time

import pytest

from tests.conftest import TOY_TASK

ADMIN = {"Authorization": "Bearer s3cret"}


@pytest.fixture
def job_service(tmp_path, tiny_model_dir, task_dir, generalist_file, monkeypatch):
    from fastapi.testclient import TestClient

    from service.app import ServiceState, create_app
    from service.config import ServeConfig

    monkeypatch.setenv("SPECIALIST_ADMIN_TOKEN", "s3cret")
    policy = tmp_path / "operator-gate.yaml"
    policy.write_text("min_gain_over_base: -100  # the tiny model cannot beat anything\n")
    config = ServeConfig(base_model=str(tiny_model_dir), task_data=task_dir, generalist_data=str(generalist_file),
                         poll_seconds=0.2, max_wait_ms=5, job_gate_policy=policy)  # fmt: skip
    state = ServiceState(config, home=tmp_path / "home")
    with TestClient(create_app(state)) as client:
        client.state = state
        yield client
    state.close()


def _request(**overrides):
    body = {"task": "toy", "superni_task": TOY_TASK, "instances_per_task": 8, "generalist": "none",
            "budget": {"max_steps": 3}, "gate": {"eval_instances": 8}}  # fmt: skip
    return body | overrides


def _wait(client, job_id, timeout=240):
    deadline = time.time() + timeout
    seen = set()
    while time.time() < deadline:
        job = client.get(f"/specialists/{job_id}", headers=ADMIN).json()
        seen.add(job["status"])
        if job["status"] in ("promoted", "rejected", "failed", "canceled"):
            return job, seen
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_submit_poll_promote_serve(job_service):
    r = job_service.post("/specialists", json=_request(), headers=ADMIN)
    assert r.status_code == 202, r.text
    job, seen = _wait(job_service, r.json()["job_id"])
    assert job["status"] == "promoted", job
    decision = job["result"]["decision"]
    assert job["result"]["route"]["task"] == "toy" and decision["gate"]["passed"] and decision["chosen"] == "ratio0"
    gain = next(c for c in decision["gate"]["checks"] if c["name"] == "beats base model")
    assert gain["ci_low"] <= gain["value"] <= gain["ci_high"] and gain["instances"] == 8  # intervals reach the job API
    assert {"queued", "preparing", "training", "evaluating", "gating"} & seen
    deadline = time.time() + 5  # the poller picks the route up without a restart
    while time.time() < deadline and "toy" not in job_service.state.router.routes:
        time.sleep(0.2)
    r = job_service.post("/predict", json={"task": "toy", "input": "a lovely film"})
    assert r.status_code == 200 and r.json()["adapter_version"] == 1
    assert [j["job_id"] for j in job_service.get("/specialists", headers=ADMIN).json()["jobs"]] == [job["job_id"]]


def test_rejected_job_is_not_routed_and_says_why(job_service):
    r = job_service.post("/specialists", json=_request(gate={"min_score": {"score": 100}, "eval_instances": 8}), headers=ADMIN)
    job, _ = _wait(job_service, r.json()["job_id"])
    assert job["status"] == "rejected" and "was not promoted" in job["error"]
    failed = [c["name"] for c in job["result"]["decision"]["gate"]["checks"] if not c["passed"]]
    assert failed == ["mean score >= 100"]
    assert "toy" not in job_service.state.registry.routes()


def test_inline_data_job(job_service):
    rows = [{"input": f"{w} film", "output": "POS" if w in ("good", "great") else "NEG"} for w in ["good", "bad", "great", "awful"] * 6]
    body = {"task": "inline", "instances": rows, "definition": "Classify as POS or NEG.", "held_out": 8,
            "instances_per_task": 8, "generalist": "none", "budget": {"max_steps": 2}}  # fmt: skip
    job, _ = _wait(job_service, job_service.post("/specialists", json=body, headers=ADMIN).json()["job_id"])
    assert job["status"] == "promoted", job


def test_cancel_stops_training_and_promotes_nothing(job_service):
    r = job_service.post("/specialists", json=_request(budget={"max_steps": 5000}), headers=ADMIN)
    job_id = r.json()["job_id"]
    deadline = time.time() + 120
    while job_service.get(f"/specialists/{job_id}", headers=ADMIN).json()["status"] != "training" and time.time() < deadline:
        time.sleep(0.2)
    assert job_service.delete(f"/specialists/{job_id}", headers=ADMIN).status_code == 200
    job, _ = _wait(job_service, job_id, timeout=60)
    assert job["status"] == "canceled" and job_service.state.registry.routes() == {}
    assert job_service.state.worker.current is None


def test_two_jobs_queue_instead_of_running_at_once(job_service):
    first = job_service.post("/specialists", json=_request(task="one"), headers=ADMIN).json()["job_id"]
    second = job_service.post("/specialists", json=_request(task="two"), headers=ADMIN).json()["job_id"]
    running_together = False
    deadline = time.time() + 240
    while time.time() < deadline:
        statuses = [job_service.get(f"/specialists/{j}", headers=ADMIN).json()["status"] for j in (first, second)]
        running = [s for s in statuses if s in ("preparing", "training", "evaluating", "gating")]
        running_together |= len(running) > 1
        if all(s in ("promoted", "rejected", "failed", "canceled") for s in statuses):
            break
        time.sleep(0.2)
    assert not running_together and statuses == ["promoted", "promoted"]


@pytest.mark.parametrize(
    "body, status, message",
    [
        (_request(superni_task="task999_nope"), 404, "unknown task"),
        (_request(task="../etc"), 422, "invalid task name"),
        (_request(instances_per_task=500), 422, "too few instances"),
        (_request(gate={"min_gain_over_champion": -5}), 422, "below the operator"),
        ({"task": "x"}, 422, "exactly one of"),
        (_request(generalist={"ratio": -1}), 422, "ratio"),
        (_request(budget={"max_steps": 0}), 422, "max_steps"),
    ],
)
def test_bad_requests_are_rejected_and_nothing_is_queued(job_service, body, status, message):
    r = job_service.post("/specialists", json=body, headers=ADMIN)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]["message"]
    assert job_service.get("/specialists", headers=ADMIN).json()["jobs"] == []


def test_jobs_need_the_admin_token_and_duplicates_conflict(job_service):
    assert job_service.post("/specialists", json=_request()).status_code == 401
    assert job_service.get("/specialists").status_code == 401
    assert job_service.post("/specialists", json=_request(budget={"max_steps": 5000}), headers=ADMIN).status_code == 202
    r = job_service.post("/specialists", json=_request(), headers=ADMIN)
    assert r.status_code == 409 and "already queued or running" in r.json()["error"]["message"]
    assert job_service.get("/specialists/ffff", headers=ADMIN).status_code == 404


def test_restart_marks_interrupted_jobs_failed(tmp_path, task_dir):
    from service.jobs import JobStore, SpecialistRequest

    store = JobStore(tmp_path)
    job_id = store.create(SpecialistRequest.model_validate(_request()))
    store.update(job_id, status="training", progress={"step": 3})
    assert JobStore(tmp_path).fail_interrupted() == 1
    job = JobStore(tmp_path).get(job_id)
    assert job["status"] == "failed" and "restart" in job["error"]
    store.update(job_id, status="promoted")  # a final status is never overwritten
    assert store.get(job_id)["status"] == "failed"


def test_a_job_table_from_an_earlier_version_is_upgraded(tmp_path):
    import sqlite3

    from service.jobs import JobStore, SpecialistRequest

    (tmp_path / "jobs").mkdir()
    old = sqlite3.connect(tmp_path / "jobs" / "jobs.sqlite")
    old.execute(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, task TEXT NOT NULL, status TEXT NOT NULL, request TEXT NOT NULL,"
        " progress TEXT NOT NULL DEFAULT '{}', result TEXT NOT NULL DEFAULT '{}', error TEXT,"
        " cancel_requested INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,"
        " started_at TEXT, finished_at TEXT)"
    )
    old.commit()
    old.close()
    store = JobStore(tmp_path)
    job_id = store.create(SpecialistRequest.model_validate(_request()))
    assert store.claim(job_id) and store.begin_promotion(job_id) and store.fail_interrupted() == 1
