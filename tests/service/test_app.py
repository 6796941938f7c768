import threading

import pytest

ADMIN = {"Authorization": "Bearer s3cret"}


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
    out = model.generate(input_ids=ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id)[0, ids.shape[1]:]  # fmt: skip
    return tok.decode(out, skip_special_tokens=True).strip()


def test_predict_routes_each_task_to_its_own_adapter(service):
    text = "the film was really lovely"
    for task in ("sentiment", "sentiment-mixed"):
        r = service.post("/predict", json={"task": task, "input": text, "parameters": {"max_new_tokens": 6}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["task"] == task and body["adapter_version"] == 1 and body["usage"]["prompt_tokens"] > 0
        assert body["output"] == _alone(service, task, text)


def test_concurrent_requests_for_different_adapters_share_batches(service):
    inputs = [f"the plot was {w}" for w in ("great", "dull", "superb", "awful", "fine", "bad")]
    results = {}

    def call(i, text):
        task = "sentiment" if i % 2 == 0 else "sentiment-mixed"
        results[i] = (task, service.post("/predict", json={"task": task, "input": text, "parameters": {"max_new_tokens": 5}}).json())

    threads = [threading.Thread(target=call, args=(i, t)) for i, t in enumerate(inputs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(service.state.backend.engine.batch_sizes) > 1, "concurrent requests should have been batched"
    for i, (task, body) in results.items():
        assert body["output"] == _alone(service, task, inputs[i], 5)


def test_unknown_task_is_404_listing_served_tasks(service):
    r = service.post("/predict", json={"task": "nope", "input": "x"})
    assert r.status_code == 404 and "sentiment, sentiment-mixed" in r.json()["error"]["message"]
    r = service.post("/generate", json={"inputs": "x", "parameters": {"adapter_id": "nope"}})
    assert r.status_code == 404
    r = service.post("/generate", json={"inputs": "x"})  # no adapter: never a silent base-model answer
    assert r.status_code == 404


@pytest.mark.parametrize(
    "body, status",
    [
        ("{not json", 400),
        ({"task": "sentiment"}, 422),
        ({"task": "sentiment", "input": 5}, 422),
        ({"task": "sentiment", "input": "x", "parameters": {"max_new_tokens": 0}}, 422),
        ({"task": "sentiment", "input": "x", "parameters": {"max_new_tokens": 100000}}, 422),
        ({"task": "sentiment", "input": "x", "parameters": {"temperature": -1}}, 422),
        ({"task": "sentiment", "input": "x", "parameters": {"top_p": 0}}, 422),
        ({"task": "sentiment", "input": "word " * 5000}, 413),
        ({"task": "../etc", "input": "x"}, 404),
    ],
)
def test_bad_requests_are_4xx_with_a_message(service, body, status):
    json_header = {"content-type": "application/json"}
    r = service.post("/predict", content=body, headers=json_header) if isinstance(body, str) else service.post("/predict", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]


def test_body_size_limit(service):
    r = service.post("/predict", content=b"x" * 2_000_000, headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_openai_client_works_unchanged(service):
    from openai import OpenAI

    client = OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=service)
    assert {m.id for m in client.models.list()} == {"sentiment", "sentiment-mixed"}
    text = "a dull story"
    completion = client.completions.create(model="sentiment", prompt=text, max_tokens=6)
    assert completion.choices[0].text.strip() == _alone(service, "sentiment", text)  # raw continuation, as OpenAI
    chat = client.chat.completions.create(model="sentiment", messages=[{"role": "user", "content": text}], max_tokens=6)
    assert chat.choices[0].message.content == _alone(service, "sentiment", text).strip()
    pieces = [c.choices[0].text for c in client.completions.create(model="sentiment", prompt=text, max_tokens=6, stream=True)]
    assert "".join(pieces) == completion.choices[0].text
    chat_pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="sentiment", messages=[{"role": "user", "content": text}], max_tokens=6, stream=True)]  # fmt: skip
    assert "".join(chat_pieces).strip() == chat.choices[0].message.content
    from openai import NotFoundError

    with pytest.raises(NotFoundError):
        client.completions.create(model="nope", prompt="x")


def test_admin_needs_the_token(service):
    assert service.post("/admin/reload").status_code == 401
    assert service.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert service.post("/admin/reload", headers=ADMIN).status_code == 200


def test_promote_and_rollback_hot_swap_without_restart(service, tiny_adapters, tmp_path):
    from tests.specialist.test_registry import _gated

    registry = service.state.registry
    registry.add(_gated(tiny_adapters["beta"], tmp_path / "beta2"), "sentiment", promote=False)
    text = "the acting was awful"
    before = service.post("/predict", json={"task": "sentiment", "input": text}).json()
    r = service.post("/admin/promote", json={"task": "sentiment", "version": 2}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["serving_version"] == 2
    after = service.post("/predict", json={"task": "sentiment", "input": text}).json()
    assert (before["adapter_version"], after["adapter_version"]) == (1, 2)
    assert after["output"] == service.post("/predict", json={"task": "sentiment-mixed", "input": text}).json()["output"]
    r = service.post("/admin/rollback", json={"task": "sentiment"}, headers=ADMIN)
    assert r.json()["serving_version"] == 1
    assert service.post("/admin/promote", json={"task": "sentiment", "version": 9}, headers=ADMIN).status_code == 404


def test_corrupt_champion_is_refused_and_the_previous_keeps_serving(service, tiny_adapters, tmp_path):
    import shutil

    from specialist.adapters import Registry

    bad = tmp_path / "bad"
    shutil.copytree(tiny_adapters["beta"], bad)
    registry: Registry = service.state.registry
    v = registry.add(bad, "sentiment", skip_gate=True)
    weights = v.path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])  # corrupted after registration
    service.post("/admin/reload", headers=ADMIN)
    body = service.post("/predict", json={"task": "sentiment", "input": "fine"}).json()
    assert body["adapter_version"] == 1
    assert "v2" in service.get("/tasks").json()["refused"]["sentiment"]


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


def test_removing_every_task_then_promoting_a_new_one_still_serves(service, tiny_adapters, tmp_path):
    from tests.specialist.test_registry import _gated

    registry = service.state.registry
    for task in ("sentiment", "sentiment-mixed"):
        registry.remove(task)
    assert service.post("/admin/reload", headers=ADMIN).json()["tasks"] == []
    registry.add(_gated(tiny_adapters["beta"], tmp_path / "again"), "fresh")
    service.post("/admin/reload", headers=ADMIN)
    r = service.post("/predict", json={"task": "fresh", "input": "a dull story"})
    assert r.status_code == 200, r.text


def test_more_routed_tasks_than_resident_slots_are_all_served(served_home, tiny_model_dir, monkeypatch):
    from fastapi.testclient import TestClient

    from service.app import ServiceState, create_app
    from service.config import ServeConfig

    state = ServiceState(ServeConfig(base_model=str(tiny_model_dir), max_resident_adapters=1), home=served_home)
    try:
        with TestClient(create_app(state)) as client:
            for _ in range(2):  # each request evicts the other task's adapter, which is reloaded on demand
                for task in ("sentiment", "sentiment-mixed"):
                    r = client.post("/predict", json={"task": task, "input": "fine", "parameters": {"max_new_tokens": 3}})
                    assert r.status_code == 200, r.text
            assert len(state.backend.engine.resident) == 1
    finally:
        state.close()


def test_chunked_bodies_are_limited_too(service):
    def chunks():
        for _ in range(40):
            yield b"x" * 50_000  # 2 MB without a Content-Length

    r = service.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


@pytest.mark.parametrize(
    "messages",
    [[{"role": "user", "content": [{"type": "text", "text": None}]}], [{"role": "system", "content": "only system"}]],
)
def test_malformed_chat_content_is_422(service, messages):
    r = service.post("/v1/chat/completions", json={"model": "sentiment", "messages": messages})
    assert r.status_code == 422 and r.json()["error"]["message"]


def test_streamed_text_never_shows_part_of_a_stop_string(service):
    import json as _json

    from specialist.prompt_format import stop_prefix_len

    assert stop_prefix_len("Hello\nInp", ("\nInput:",)) == 4 and stop_prefix_len("Hello", ("\nInput:",)) == 0
    full = service.post("/v1/completions", json={"model": "sentiment", "prompt": "fine", "max_tokens": 8}).json()["choices"][0]["text"]
    stop = full[3:6] if len(full) > 6 else "zzz"
    body = {"model": "sentiment", "prompt": "fine", "max_tokens": 8, "stop": [stop], "stream": True}
    with service.stream("POST", "/v1/completions", json=body) as r:
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    text = "".join(_json.loads(e)["choices"][0]["text"] for e in events if e != "[DONE]")
    assert stop not in text and text == full[: full.find(stop)] if stop in full else text == full


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
