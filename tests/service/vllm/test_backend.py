"""`specialist serve --backend vllm` against its own vLLM engine (the CPU build) on the default model: the
official clients, routing (an unknown task never reaches the engine), promotion and rollback under load, and
an engine killed mid-load coming back with its adapters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil
import pytest
import requests

from reliability.faults import fault_promotion_during_load
from reliability.home import predict_requests
from reliability.traffic import Traffic
from tests.service.vllm.conftest import MAX_NEW, TASKS, engine_pids, engine_url

pytestmark = pytest.mark.slow


def _engine_prompt_tokens(home) -> float:
    """Prompt tokens the engine has taken in (its own Prometheus counter: every request it got adds to it,
    also those ended early at a stop, which its request_success counter leaves out)."""
    text = requests.get(engine_url(home) + "/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("vllm:prompt_tokens_total")
    )


def test_official_clients_get_the_same_answers_as_the_native_api(vllm_server):
    from openai import OpenAI

    text = "The acting was wooden and the plot made no sense."
    native = requests.post(
        f"{vllm_server.url}/predict",
        json={"task": "sst2", "input": text, "parameters": {"max_new_tokens": MAX_NEW}},
        timeout=120,
    ).json()
    assert native["task"] == "sst2" and native["adapter_version"] == 1 and native["output"]

    client = OpenAI(base_url=f"{vllm_server.url}/v1", api_key="unused")
    completion = client.completions.create(model="sst2", prompt=text, max_tokens=MAX_NEW, logprobs=2)
    assert completion.choices[0].text.strip() == native["output"]
    logprobs = completion.choices[0].logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) >= 1
    assert all(lp <= 0 for lp in logprobs.token_logprobs) and all(len(top) <= 2 for top in logprobs.top_logprobs)
    chat = client.chat.completions.create(
        model="sst2", messages=[{"role": "user", "content": text}], max_tokens=MAX_NEW, n=2, temperature=0.8, seed=7
    )
    assert len(chat.choices) == 2 and chat.usage.completion_tokens >= 1
    schema = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}
    constrained = client.completions.create(
        model="sst2",
        prompt=text,
        max_tokens=24,
        extra_body={"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}},
    )
    out = constrained.choices[0]
    assert out.text.startswith('{"label":"'), out.text  # compact JSON, whatever the budget left of it
    if out.finish_reason == "stop":  # a budget that ran out leaves it unfinished, not wrong
        assert "label" in json.loads(out.text)

    # huggingface_hub's InferenceClient, in a process without HF_HUB_OFFLINE (it refuses localhost then).
    script = (
        "import json, sys\nfrom huggingface_hub import InferenceClient\n"
        f"c = InferenceClient(base_url={vllm_server.url!r})\n"
        f"out = c.text_generation({text!r}, adapter_id='sst2', max_new_tokens={MAX_NEW}, details=True)\n"
        f"streamed = ''.join(c.text_generation({text!r}, adapter_id='sst2', max_new_tokens={MAX_NEW}, stream=True))\n"
        "print(json.dumps({'text': out.generated_text, 'tokens': len(out.details.tokens), 'streamed': streamed}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    tgi = json.loads(done.stdout)
    # /generate passes the bare input to the adapter's prompt exactly as /predict does; the stream adds up to it.
    assert tgi["text"].strip() == native["output"] and tgi["streamed"] == tgi["text"] and tgi["tokens"] >= 1


def test_an_unknown_task_is_404_and_never_reaches_the_engine(vllm_server):
    before = _engine_prompt_tokens(vllm_server.home)
    for path, body in (
        ("/predict", {"task": "no-such-task", "input": "x"}),
        ("/v1/completions", {"model": "no-such-task", "prompt": "x"}),
        ("/generate", {"inputs": "x", "parameters": {"adapter_id": "no-such-task"}}),
    ):
        r = requests.post(vllm_server.url + path, json=body, timeout=60)
        assert r.status_code == 404, (path, r.text)
    assert _engine_prompt_tokens(vllm_server.home) == before
    requests.post(f"{vllm_server.url}/predict", json={"task": "sst2", "input": "fine"}, timeout=120).raise_for_status()
    assert _engine_prompt_tokens(vllm_server.home) > before  # the counter does move: the check above can fail


def test_a_parameter_vllm_cannot_honour_is_refused_not_dropped(vllm_server):
    r = requests.post(
        f"{vllm_server.url}/generate",
        json={"inputs": "x", "parameters": {"adapter_id": "sst2", "typical_p": 0.5, "do_sample": True}},
        timeout=60,
    )
    assert r.status_code == 422 and "typical_p" in r.json()["error"], r.text


def test_promotion_and_rollback_under_load_serve_only_the_routed_adapter(vllm_server, fingerprints):
    inputs, fp = fingerprints
    result = fault_promotion_during_load(vllm_server, inputs, fp, clients=4, seconds=12, max_new=MAX_NEW)
    assert result.swaps >= 4 and result.swaps_failed == 0, result
    assert result.failed_requests == 0, result.errors
    assert result.judged > 0 and result.wrong_adapter == 0, result
    metrics = requests.get(f"{vllm_server.url}/metrics", timeout=10).text
    assert 'specialist_engine_up{engine="local"' in metrics


def test_an_engine_killed_mid_load_is_restarted_and_gets_its_adapters_back(vllm_server, fingerprints):
    inputs, fp = fingerprints
    old = engine_pids(vllm_server)
    assert old, "no engine process found under the service"
    traffic = Traffic(vllm_server.url, predict_requests(inputs, MAX_NEW), 4, None, fp, seed=3).start()
    time.sleep(3)
    for pid in old:  # the engine and its own workers, as a crash or the OOM killer leaves it
        for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
            p.kill()
    deadline = time.time() + 300
    while time.time() < deadline and requests.get(f"{vllm_server.url}/readyz", timeout=10).status_code == 200:
        time.sleep(0.2)  # the service notices: not ready while its engine is down
    assert time.time() < deadline, "/readyz stayed ready with its engine killed"
    while time.time() < deadline and requests.get(f"{vllm_server.url}/readyz", timeout=10).status_code != 200:
        time.sleep(1)
    time.sleep(3)
    traffic.stop()
    assert requests.get(f"{vllm_server.url}/readyz", timeout=10).status_code == 200, "the engine did not come back"
    new = engine_pids(vllm_server)
    assert new and not set(new) & set(old)
    held = requests.get(engine_url(vllm_server.home) + "/v1/models", timeout=10)
    assert held.status_code == 401  # the engine takes only the service's own per-start key
    summary = traffic.summary()
    assert summary.wrong_adapter == 0
    # While it was down, requests were refused with the cause (503), never answered by another adapter; after,
    # every task answers again.
    for task in TASKS:
        r = requests.post(f"{vllm_server.url}/predict", json={"task": task, "input": "good"}, timeout=120)
        assert r.status_code == 200, r.text
    statuses = {o.status for o in traffic.outcomes if o.error}
    assert statuses <= {503}, traffic.summary().http_error_examples
