"""The generation engine (service/engine.py), driven through the assembled service: concurrent requests for
different adapters share batches, adapters are evicted and reloaded on demand, a departed client's row stops."""

import threading

from tests.service.conftest import _alone


def test_concurrent_requests_for_different_adapters_share_batches(service):
    inputs = [f"the plot was {w}" for w in ("great", "dull", "superb", "awful", "fine", "bad")]
    results = {}

    def call(i, text):
        task = "sentiment" if i % 2 == 0 else "sentiment-mixed"
        results[i] = (
            task,
            service.post("/predict", json={"task": task, "input": text, "parameters": {"max_new_tokens": 5}}).json(),
        )

    threads = [threading.Thread(target=call, args=(i, t)) for i, t in enumerate(inputs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(service.state.backend.engine.batch_sizes) > 1, "concurrent requests should have been batched"
    for i, (task, body) in results.items():
        assert body["output"] == _alone(service, task, inputs[i], 5)


def test_more_routed_tasks_than_resident_slots_are_all_served(served_home, tiny_model_dir):
    from fastapi.testclient import TestClient

    from service.app import ServiceState, create_app
    from service.config import ServeConfig

    state = ServiceState(ServeConfig(base_model=str(tiny_model_dir), max_resident_adapters=1), home=served_home)
    try:
        with TestClient(create_app(state)) as client:
            for _ in range(2):  # each request evicts the other task's adapter, which is reloaded on demand
                for task in ("sentiment", "sentiment-mixed"):
                    r = client.post(
                        "/predict", json={"task": task, "input": "fine", "parameters": {"max_new_tokens": 3}}
                    )
                    assert r.status_code == 200, r.text
            assert len(state.backend.engine.resident) == 1
    finally:
        state.close()


def test_a_request_whose_client_left_stops_generating(service):
    from service.generation import GenRequest

    engine = service.state.backend.engine
    served = service.state.router.resolve("sentiment")
    ids = engine.tokenizer(served.prompt.render("a fine film"))["input_ids"]
    full = engine.submit(GenRequest(ids, served.engine_name, max_new_tokens=24)).result(timeout=60)
    left = GenRequest(ids, served.engine_name, max_new_tokens=24)
    left.on_text = lambda piece, token: left.cancelled.set()  # the client disconnects after its first piece
    cut = engine.submit(left).result(timeout=60)
    assert full.completion_tokens > 3, "the uncancelled request must run long enough to tell the difference"
    assert cut.completion_tokens <= 2 and cut.token_ids == full.token_ids[: cut.completion_tokens]
