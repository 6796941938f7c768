"""The assembled service (service/app.py): one engine batches every task's requests, evicts and reloads adapters,
frees a departed client's row, and gives cores to a training job."""

import threading

import pytest


def _alone(client, task, text, max_new_tokens=6):
    """What the task's adapter alone produces: peft's own PeftModel.generate, one row, no batching, no cache."""
    import torch
    from peft import PeftModel

    from specialist.base_models import load_model, load_tokenizer

    state = client.state
    served = state.router.resolve(task)
    tok = load_tokenizer(state.base)
    model = PeftModel.from_pretrained(load_model(state.base, torch.device("cpu"), torch.float32), served.path).eval()
    ids = tok(served.prompt.render(text), return_tensors="pt")["input_ids"]
    out = model.generate(
        input_ids=ids,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )[0, ids.shape[1] :]
    return tok.decode(out, skip_special_tokens=True).strip()


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


def test_more_routed_tasks_than_resident_slots_are_all_served(served_home, tiny_model_dir, monkeypatch):
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
    from service.engine import GenRequest

    engine = service.state.backend.engine
    served = service.state.router.resolve("sentiment")
    ids = engine.tokenizer(served.prompt.render("a fine film"))["input_ids"]
    full = engine.submit(GenRequest(ids, served.engine_name, max_new_tokens=24)).result(timeout=60)
    left = GenRequest(ids, served.engine_name, max_new_tokens=24)
    left.on_text = lambda piece, token: left.cancelled.set()  # the client disconnects after its first piece
    cut = engine.submit(left).result(timeout=60)
    assert full.completion_tokens > 3, "the uncancelled request must run long enough to tell the difference"
    assert cut.completion_tokens <= 2 and cut.token_ids == full.token_ids[: cut.completion_tokens]


def test_serving_gives_up_cores_while_a_job_trains(service, monkeypatch):
    engine, config = service.state.backend.engine, service.state.config
    idle = engine.threads_wanted()
    if idle == 1:
        pytest.skip("one torch thread: there is no core to give up")
    running = type("Job", (), {"poll": lambda self: 0})()  # a job process is running
    monkeypatch.setattr(service.state.worker, "current", running)
    busy = engine.threads_wanted()
    assert busy == max(1, idle - config.job_threads) and busy < idle
    assert service.post("/predict", json={"task": "sentiment", "input": "fine"}).status_code == 200
    assert engine.threads == busy
    monkeypatch.setattr(service.state.worker, "current", None)
    assert service.post("/predict", json={"task": "sentiment", "input": "fine"}).status_code == 200
    assert engine.threads == idle
