"""Requests that cannot become a job are refused with the reason, and nothing is queued."""

import pytest

from tests.service.jobs.conftest import ADMIN, job_request


@pytest.mark.parametrize(
    "body, status, message",
    [
        (job_request(superni_task="task999_nope"), 404, "unknown task"),
        (job_request(task="../etc"), 422, "invalid task name"),
        (job_request(instances_per_task=500), 422, "too few instances"),
        (job_request(gate={"min_gain_over_champion": -5}), 422, "below the operator"),
        ({"task": "x"}, 422, "exactly one of"),
        (job_request(generalist={"ratio": -1}), 422, "ratio"),
        (job_request(budget={"max_steps": 0}), 422, "max_steps"),
    ],
)
def test_bad_requests_are_rejected_and_nothing_is_queued(job_service, body, status, message):
    r = job_service.post("/specialists", json=body, headers=ADMIN)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]["message"]
    assert job_service.get("/specialists", headers=ADMIN).json()["jobs"] == []
