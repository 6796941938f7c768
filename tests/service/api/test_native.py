"""The native dialect: /predict."""

from tests.service.conftest import _alone


def test_predict_routes_each_task_to_its_own_adapter(service):
    text = "the film was really lovely"
    for task in ("sentiment", "sentiment-mixed"):
        r = service.post("/predict", json={"task": task, "input": text, "parameters": {"max_new_tokens": 6}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["task"] == task and body["adapter_version"] == 1 and body["usage"]["prompt_tokens"] > 0
        assert body["output"] == _alone(service, task, text)
