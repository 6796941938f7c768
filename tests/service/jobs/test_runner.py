"""One job's process through the API: submit -> poll -> promoted -> served, or rejected and not routed."""

import subprocess
import sys
import time

from tests.service.jobs.conftest import ADMIN, job_request, wait_for_job


def test_submit_poll_promote_serve(job_service):
    from service.client import SpecialistClient

    r = job_service.post("/specialists", json=job_request(), headers=ADMIN)
    assert r.status_code == 202, r.text
    job, seen = wait_for_job(job_service, r.json()["job_id"])
    assert job["status"] == "promoted", job
    decision = job["result"]["decision"]
    assert job["result"]["route"]["task"] == "toy" and decision["gate"]["passed"] and decision["chosen"] == "ratio0"
    gain = next(c for c in decision["gate"]["checks"] if c["name"] == "beats base model")
    assert gain["ci_low"] <= gain["value"] <= gain["ci_high"] and gain["instances"] == 8  # intervals reach the job API
    assert {"queued", "preparing", "training", "evaluating", "gating"} & seen
    # The client reads the decision back typed (a BuildDecision) and tells people what was chosen and why.
    described = SpecialistClient.describe(job)
    assert "ratio0:" in described and "PASS beats base model" in described and described.endswith("serving: toy v1")
    deadline = time.time() + 5  # the poller picks the route up without a restart
    while time.time() < deadline and "toy" not in job_service.state.router.routes:
        time.sleep(0.2)
    r = job_service.post("/predict", json={"task": "toy", "input": "a lovely film"})
    assert r.status_code == 200 and r.json()["adapter_version"] == 1
    assert [j["job_id"] for j in job_service.get("/specialists", headers=ADMIN).json()["jobs"]] == [job["job_id"]]


def test_rejected_job_is_not_routed_and_says_why(job_service):
    r = job_service.post(
        "/specialists", json=job_request(gate={"min_score": {"score": 100}, "eval_instances": 8}), headers=ADMIN
    )
    job, _ = wait_for_job(job_service, r.json()["job_id"])
    assert job["status"] == "rejected" and "was not promoted" in job["error"]["message"]
    assert job["error"]["code"] == "gate_rejected"
    failed = [c["name"] for c in job["result"]["decision"]["gate"]["checks"] if not c["passed"]]
    assert failed == ["mean score >= 100"]
    assert "toy" not in job_service.state.registry.routes()


def test_the_runner_sets_its_environment_before_any_hugging_face_library_loads():
    # `python -m service.jobs.runner` imports the package first: it must not load what the runner configures.
    code = "import sys, service.jobs.runner; print(sorted(m for m in ('huggingface_hub', 'transformers', 'tokenizers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
