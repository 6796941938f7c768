"""The hand-written hostile-request table (reliability/cases.py) against the in-process service.

Each case: no 5xx, the expected 4xx, and a message that names the problem. After the whole table, the served
routes are the same as before and every served task still answers.
"""

import pytest

from reliability.cases import check_response, hostile_cases
from tests.reliability.conftest import CAP, TASK, TOKEN, record

CASES = hostile_cases(TASK, TOKEN, cap=CAP)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_request(rel_service, case):
    r = rel_service.request(case.method, case.path, content=case.body, headers=case.headers)
    problem = check_response(case, r.status_code, r.content)
    record("hostile", case.id, r.status_code, problem)
    assert problem is None, problem


def test_the_table_is_large_and_distinct():
    assert len({c.id for c in CASES}) == len(CASES) >= 300


def test_hostile_names_never_reach_a_served_adapter(rel_service):
    """A name that merely looks like a served task (trailing space, zero-width, full-width, ../) is a 404."""
    served = rel_service.get("/tasks").json()["tasks"]
    assert {t["task"] for t in served} == {"sentiment", "sentiment-mixed"}
    assert (
        rel_service.post(
            "/predict", json={"task": TASK, "input": "fine", "parameters": {"max_new_tokens": 2}}
        ).status_code
        == 200
    )
    for name in (
        f"{TASK} ",
        f"{TASK}\u200b",
        f"{TASK}/../{TASK}",
        TASK.upper(),
        "".join(chr(ord(ch) + 0xFEE0) for ch in TASK),
    ):
        r = rel_service.post("/predict", json={"task": name, "input": "fine"})
        assert r.status_code == 404 and "served tasks: sentiment, sentiment-mixed" in r.json()["error"]["message"], name
