"""The local executor: one job at a time, a cancel stops training, a job whose process dies resumes from its
checkpoint and promotes once, and a leftover runner is recognised as one."""

import os
import signal
import time

from tests.service.jobs.conftest import ADMIN, job_request, wait_for_job


def test_cancel_stops_training_and_promotes_nothing(job_service):
    r = job_service.post("/specialists", json=job_request(budget={"max_steps": 5000}), headers=ADMIN)
    job_id = r.json()["job_id"]
    deadline = time.time() + 120
    while (
        job_service.get(f"/specialists/{job_id}", headers=ADMIN).json()["status"] != "training"
        and time.time() < deadline
    ):
        time.sleep(0.2)
    assert job_service.delete(f"/specialists/{job_id}", headers=ADMIN).status_code == 200
    job, _ = wait_for_job(job_service, job_id, timeout=60)
    assert job["status"] == "canceled" and job_service.state.registry.routes() == {}
    assert job["error"] == {"code": "canceled", "message": "canceled by request; nothing was promoted"}
    assert job_service.state.worker.current is None


def test_a_job_whose_process_dies_resumes_from_its_checkpoint_and_promotes_once(job_service):
    job_id = job_service.post("/specialists", json=job_request(budget={"max_steps": 150}), headers=ADMIN).json()[
        "job_id"
    ]
    deadline = time.time() + 120
    while not job_service.get(f"/specialists/{job_id}/checkpoints", headers=ADMIN).json()["data"]:  # step 50
        assert time.time() < deadline, "the job wrote no checkpoint"
        time.sleep(0.05)
    runner = job_service.state.worker.current
    os.killpg(runner.pid, signal.SIGKILL)  # the worker is lost mid-training, as to the OOM killer
    job, _ = wait_for_job(job_service, job_id)
    assert job["status"] == "promoted" and job["attempts"] == 2
    events = job_service.get(f"/specialists/{job_id}/events", params={"limit": 1000}, headers=ADMIN).json()["data"]
    resumed = [e["message"] for e in events if "attempt" in e["data"]]
    assert len(resumed) == 1 and resumed[0].startswith("the job process exited with code -9 (see ")
    assert resumed[0].endswith(".log): resuming from the last checkpoint (attempt 2 of 3)")
    steps = [c["step"] for c in job_service.get(f"/specialists/{job_id}/checkpoints", headers=ADMIN).json()["data"]]
    assert steps == [50, 100, 150], steps  # once each: the resumed run went on from step 50, not from step 0
    after = events[next(i for i, e in enumerate(events) if "attempt" in e["data"]) :]
    trained = [e["data"]["step"] for e in after if e["type"] == "metrics" and "step" in e["data"]]
    assert trained and trained[0] > 50, trained  # killed mid-training: it trained again after the resume
    registry = job_service.state.registry
    assert [v.version for v in registry.versions("toy")] == [1] and registry.routes()["toy"].version == 1


def test_two_jobs_queue_instead_of_running_at_once(job_service):
    first = job_service.post("/specialists", json=job_request(task="one"), headers=ADMIN).json()["job_id"]
    second = job_service.post("/specialists", json=job_request(task="two"), headers=ADMIN).json()["job_id"]
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


def test_a_runner_is_recognised_under_its_current_and_its_earlier_module_name():
    from service.jobs.executor import is_runner_cmdline

    python = b"/usr/bin/python3\0-m\0"
    assert is_runner_cmdline(python + b"service.jobs.runner\0" + b"ab" * 16 + b"\0")
    assert is_runner_cmdline(python + b"service.job_runner\0" + b"ab" * 16 + b"\0")  # started before the upgrade
    assert not is_runner_cmdline(python + b"service.app\0")


def test_the_service_depends_on_the_executor_protocol():
    import inspect

    from service.jobs import Executor
    from service.state import ServingState

    assert {"current", "close"} <= set(dir(Executor))
    assert inspect.signature(ServingState).parameters["worker"].annotation in (Executor, "Executor")
