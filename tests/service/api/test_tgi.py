"""The TGI dialect (service/api/tgi.py): /generate, its compat route /, and /generate_stream's SSE events; the
task is the adapter_id."""

import json

from tests.service.conftest import _alone

TEXT = "the film was really lovely"


def _body(task="sentiment", **parameters):
    return {"inputs": TEXT, "parameters": {"adapter_id": task, "max_new_tokens": 6, **parameters}}


def test_generate_answers_with_the_routed_tasks_adapter(service):
    for task in ("sentiment", "sentiment-mixed"):
        r = service.post("/generate", json=_body(task))
        assert r.status_code == 200, r.text
        assert set(r.json()) == {"generated_text"}  # details only when asked for
        assert r.json()["generated_text"].strip() == _alone(service, task, TEXT)
    detailed = service.post("/generate", json=_body(details=True)).json()
    assert detailed["details"]["finish_reason"] in {"length", "eos_token"}
    assert 0 < detailed["details"]["generated_tokens"] <= 6
    assert service.post("/", json=_body()).json() == [{"generated_text": detailed["generated_text"]}]


def test_generate_stream_sends_tokens_then_a_final_event(service):
    whole = service.post("/generate", json=_body()).json()["generated_text"]
    with service.stream("POST", "/generate_stream", json=_body()) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    *tokens, final = events
    assert tokens and all(not e["token"]["special"] and e["generated_text"] is None for e in tokens)
    assert [e["index"] for e in events] == list(range(1, len(events) + 1))
    assert final["token"]["special"] and final["generated_text"] == whole
    assert "".join(e["token"]["text"] for e in tokens) == whole
    assert final["details"]["generated_tokens"] > 0 and "tokens" not in final["details"]


def test_an_unknown_task_is_404_naming_the_served_tasks(service):
    for path in ("/generate", "/generate_stream"):
        r = service.post(path, json=_body("nope"))
        assert r.status_code == 404, (path, r.text)
        assert "sentiment, sentiment-mixed" in r.json()["error"]["message"]
