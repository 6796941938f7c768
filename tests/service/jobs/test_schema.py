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
        (job_request(metadata={f"k{n}": "v" for n in range(17)}), 422, "metadata: at most 16 keys, got 17"),
        (job_request(metadata={"k" * 65: "v"}), 422, "metadata: keys have 1 to 64 characters, not 65"),
        (job_request(metadata={"": "v"}), 422, "metadata: keys have 1 to 64 characters, not 0"),
        (job_request(metadata={"k": "v" * 513}), 422, "the value of 'k' has 513 characters, at most 512"),
        (job_request(metadata={"k": 1}), 422, "metadata.k: Input should be a valid string"),
        (job_request(metadata=["k"]), 422, "metadata: Input should be a valid dictionary"),
    ],
)
def test_bad_requests_are_rejected_and_nothing_is_queued(job_service, body, status, message):
    r = job_service.post("/specialists", json=body, headers=ADMIN)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]["message"]
    assert job_service.get("/specialists", headers=ADMIN).json()["jobs"] == []
