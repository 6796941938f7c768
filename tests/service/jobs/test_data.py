"""Inline data becomes a task file the build trains and gates on."""

from tests.service.jobs.conftest import ADMIN, wait_for_job


def test_inline_data_job(job_service):
    rows = [
        {"input": f"{w} film", "output": "POS" if w in ("good", "great") else "NEG"}
        for w in ["good", "bad", "great", "awful"] * 6
    ]
    body = {
        "task": "inline",
        "instances": rows,
        "definition": "Classify as POS or NEG.",
        "held_out": 8,
        "instances_per_task": 8,
        "generalist": "none",
        "budget": {"max_steps": 2},
    }
    job, _ = wait_for_job(job_service, job_service.post("/specialists", json=body, headers=ADMIN).json()["job_id"])
    assert job["status"] == "promoted", job
