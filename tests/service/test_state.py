"""The request path (service/state.py): unknown tasks are 404s, never a base-model answer; a swap is re-routed."""


def test_unknown_task_is_404_listing_served_tasks(service):
    r = service.post("/predict", json={"task": "nope", "input": "x"})
    assert r.status_code == 404 and "sentiment, sentiment-mixed" in r.json()["error"]["message"]
    r = service.post("/generate", json={"inputs": "x", "parameters": {"adapter_id": "nope"}})
    assert r.status_code == 404
    r = service.post("/generate", json={"inputs": "x"})  # no adapter: never a silent base-model answer
    assert r.status_code == 404


def test_a_request_caught_in_a_swap_is_rerouted_not_failed(service, monkeypatch):
    from service.engine import AdapterGone

    backend = service.state.backend
    real, calls = backend.generate, []

    async def gone_once(served, prompt, params):
        calls.append(served.engine_name)
        if len(calls) == 1:
            raise AdapterGone("adapter unloaded by a swap")
        return await real(served, prompt, params)

    monkeypatch.setattr(backend, "generate", gone_once)
    r = service.post("/predict", json={"task": "sentiment", "input": "fine"})
    assert r.status_code == 200 and len(calls) == 2
