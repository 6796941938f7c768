"""Over a real `bentoml serve` on 127.0.0.1 (started by `specialist serve`), with the tiny model and adapters."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from service.live import LiveServer, free_port

ADMIN = {"Authorization": "Bearer s3cret"}
VERDICT = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["POS", "NEG"]}},
    "required": ["label"],
    "additionalProperties": False,
}
pytestmark = pytest.mark.slow


def serving(home, *args, timeout=180) -> LiveServer:
    """The server on `home` with `args`; its log beside the home (every request is logged)."""
    port = free_port()
    return LiveServer(
        home,
        "s3cret",
        args,
        log=Path(home).parent / f"serve-{port}.log",
        port=port,
        ready_timeout=timeout,
        stop_timeout=30,
    )


def _predict(url, task, text, **params):
    return requests.post(f"{url}/predict", json={"task": task, "input": text, "parameters": params}, timeout=60)


def test_bentoml_serve_end_to_end(served_home, tiny_model_dir, tiny_adapters, tmp_path):
    from specialist.adapters import Registry
    from tests.specialist.test_registry import _gated

    base = ["--base-model", str(tiny_model_dir), "--num-threads", "1", "--poll-seconds", "0.2"]
    with serving(served_home, *base) as server:
        url = server.url
        assert requests.get(f"{url}/livez", timeout=30).status_code == 200
        tasks = requests.get(f"{url}/tasks", timeout=30).json()["tasks"]
        assert [t["task"] for t in tasks] == ["sentiment", "sentiment-mixed"]
        expected = _predict(url, "sentiment", "a lovely film", max_new_tokens=6).json()["output"]
        assert _predict(url, "nope", "x").status_code == 404
        assert requests.post(f"{url}/admin/reload", timeout=30).status_code == 401

        # The official TGI client, unchanged, in a process without HF_HUB_OFFLINE (it refuses localhost then).
        script = (
            "import json, sys\nfrom huggingface_hub import InferenceClient\n"
            f"c = InferenceClient(base_url={url!r})\n"
            "a = c.text_generation('a lovely film', adapter_id='sentiment', max_new_tokens=6)\n"
            "b = ''.join(c.text_generation('a lovely film', adapter_id='sentiment', max_new_tokens=6, stream=True))\n"
            "print(json.dumps([a, b]))\n"
        )
        env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        plain, streamed = json.loads(out.stdout)
        assert plain.strip() == expected and streamed == plain

        # The frozen `text-generation` client, which cannot name an adapter: a base URL per task.
        from text_generation import Client

        old_client = Client(f"{url}/tgi/sentiment", timeout=60)
        answer = old_client.generate("a lovely film", max_new_tokens=6)
        assert answer.generated_text == plain and answer.details.tokens and answer.details.tokens[0].logprob < 0
        assert "".join(r.token.text for r in old_client.generate_stream("a lovely film", max_new_tokens=6)) == plain

        # The openai client over the live server: choices, log-probabilities and structured output.
        from openai import OpenAI

        oai = OpenAI(base_url=f"{url}/v1", api_key="unused")
        chat = oai.chat.completions.create(
            model="sentiment",
            messages=[{"role": "user", "content": "a lovely film"}],
            max_tokens=30,
            n=2,
            logprobs=True,
            response_format={"type": "json_schema", "json_schema": {"name": "v", "schema": VERDICT}},
        )
        assert [c.index for c in chat.choices] == [0, 1]
        assert json.loads(chat.choices[0].message.content)["label"] in ("POS", "NEG")
        assert all(t.logprob <= 0 for t in chat.choices[0].logprobs.content)

        # Remote backend: a second service forwards to this one through the TGI protocol.
        remote = ["--backend", "tgi", "--tgi-urls", url, "--base-model", str(tiny_model_dir)]
        with serving(served_home, *remote) as router_server:
            router = router_server.url
            via_router = _predict(router, "sentiment", "a lovely film", max_new_tokens=6)
            assert via_router.status_code == 200 and via_router.json()["output"] == expected
            assert _predict(router, "nope", "x").status_code == 404  # validated before forwarding

        # Promotion and rollback under concurrent load lose no request.
        Registry(served_home).add(_gated(tiny_adapters["beta"], tmp_path / "beta2"), "sentiment", promote=False)
        statuses, stop = [], threading.Event()

        def load():
            while not stop.is_set():
                statuses.append(_predict(url, "sentiment", "the plot was dull", max_new_tokens=4).status_code)

        workers = [threading.Thread(target=load) for _ in range(4)]
        for w in workers:
            w.start()
        for version in (2, 1, 2):
            started = time.time()
            r = requests.post(
                f"{url}/admin/promote", json={"task": "sentiment", "version": version}, headers=ADMIN, timeout=30
            )
            assert r.json()["serving_version"] == version and time.time() - started < 2
            time.sleep(0.5)
        stop.set()
        for w in workers:
            w.join()
        assert statuses and set(statuses) == {200}
        metrics = requests.get(f"{url}/metrics", timeout=30).text
        assert "specialist_requests_total" in metrics and "specialist_batch_size" in metrics

    # A restart restores exactly the same routes.
    with serving(served_home, *base) as server:
        url = server.url
        served = {t["task"]: t["version"] for t in requests.get(f"{url}/tasks", timeout=30).json()["tasks"]}
        assert served == {"sentiment": 2, "sentiment-mixed": 1}
