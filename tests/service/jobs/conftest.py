"""A service with a job executor over the toy task, and helpers to submit a request and wait for its job."""

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
    config = ServeConfig(
        base_model=str(tiny_model_dir),
        task_data=task_dir,
        generalist_data=str(generalist_file),
        poll_seconds=0.2,
        max_wait_ms=5,
        job_gate_policy=policy,
    )
    state = ServiceState(config, home=tmp_path / "home")
    with TestClient(create_app(state)) as client:
        client.state = state
        yield client
    state.close()


def job_request(**overrides):
    body = {
        "task": "toy",
        "superni_task": TOY_TASK,
        "instances_per_task": 8,
        "generalist": "none",
        "budget": {"max_steps": 3},
        "gate": {"eval_instances": 8},
    }
    return body | overrides


def wait_for_job(client, job_id, timeout=240):
    deadline = time.time() + timeout
    seen = set()
    while time.time() < deadline:
        job = client.get(f"/specialists/{job_id}", headers=ADMIN).json()
        seen.add(job["status"])
        if job["status"] in ("promoted", "rejected", "failed", "canceled"):
            return job, seen
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {job}")
