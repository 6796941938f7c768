"""The vllm backend's reading of an engine's answers, against a fake engine serving canned server-sent events
(httpx.MockTransport): the stop rule over the engine's token ids, finish reasons, logprobs, and the failures
that must not pass for answers (an error chunk, an abort, a 404 for an adapter the engine no longer holds)."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from types import SimpleNamespace

import httpx
import pytest

from inference.adapter_cache import AdapterGone
from service.backends import EngineError, GenParams
from service.generation import Generation, Sampling
from service.vllm.backend import VLLMBackend
from service.vllm.engine import VLLMEngine

LORA = "sf-" + "a" * 24
SERVED = SimpleNamespace(task="sentiment", engine_name="adapter1_v1")


def _backend(tokenizer, handler) -> VLLMBackend:
    """A backend over one fake engine that holds LORA (no process, no reconciler thread)."""
    backend = VLLMBackend.__new__(VLLMBackend)
    engine = VLLMEngine.__new__(VLLMEngine)
    engine.url, engine.label, engine.api_key, engine.local_files = "http://engine", "fake", None, True
    engine._async = httpx.AsyncClient(base_url="http://engine", transport=httpx.MockTransport(handler))
    backend.tokenizer = tokenizer
    backend._special = frozenset(tokenizer.all_special_ids)
    backend._eos = frozenset({tokenizer.eos_token_id})
    backend.engines, backend._turn, backend._lock = [engine], itertools.count(), threading.RLock()
    backend._names, backend._up, backend._held = {SERVED.engine_name: LORA}, {"fake": True}, {"fake": {LORA}}
    return backend


def _sse(chunks: list[dict]) -> httpx.Response:
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})


def _choice(token: int, logprob: float, finish: str | None = None, top: dict | None = None) -> dict:
    logprobs = {"tokens": [f"token_id:{token}"], "token_logprobs": [logprob], "top_logprobs": [top or {}]}
    return {"choices": [{"index": 0, "text": "?", "token_ids": [token], "logprobs": logprobs, "finish_reason": finish}]}


@pytest.fixture
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _run(backend, params=GenParams(16)) -> list:
    async def collect():
        return [item async for item in backend.stream(SERVED, "prompt", params)]

    return asyncio.run(collect())


def test_the_frame_stop_rule_cuts_the_engines_tokens_and_says_stop(tokenizer):
    ids = tokenizer(" positive\n\nInput: more text", add_special_tokens=False)["input_ids"]
    sent = []

    def handler(request):
        sent.append(json.loads(request.content))
        return _sse([_choice(t, -0.5, top={f"token_id:{t}": -0.5, "token_id:0": -2.0}) for t in ids])

    items = _run(_backend(tokenizer, handler), GenParams(16, Sampling(top_logprobs=1)))
    result = items[-1]
    assert isinstance(result, Generation) and result.text == " positive" and result.finish_reason == "stop"
    assert "".join(i.text for i in items[:-1]) == result.text  # the streamed pieces add up to the answer
    assert all(t.logprob == -0.5 and len(t.top) == 1 for t in result.tokens)
    assert sent[0]["model"] == LORA and sent[0]["stream"] and sent[0]["return_token_ids"]
    assert "stop" not in sent[0]  # vLLM takes 4 stops at most: the rule is applied here


def test_a_budget_that_runs_out_is_length_and_eos_is_not_a_token(tokenizer):
    ids = tokenizer(" yes", add_special_tokens=False)["input_ids"]
    chunks = [_choice(t, -0.1) for t in ids[:-1]] + [_choice(ids[-1], -0.1, "length")]
    result = _run(_backend(tokenizer, lambda r: _sse(chunks)))[-1]
    assert result.finish_reason == "length" and result.completion_tokens == len(ids)
    eos = [_choice(ids[0], -0.1), _choice(tokenizer.eos_token_id, -0.1, "stop")]
    result = _run(_backend(tokenizer, lambda r: _sse(eos)))[-1]
    assert result.finish_reason == "stop" and result.token_ids == ids[:1]


def test_an_engine_failing_after_its_200_is_an_error_not_a_short_answer(tokenizer):
    ids = tokenizer(" yes", add_special_tokens=False)["input_ids"]
    for tail in ({"error": {"message": "EngineCore died", "code": 500}}, _choice(ids[0], -0.1, "abort")):
        with pytest.raises(EngineError) as caught:
            _run(_backend(tokenizer, lambda r, tail=tail: _sse([_choice(ids[0], -0.1), tail])))
        assert caught.value.status == 502


def test_an_adapter_the_engine_no_longer_holds_is_re_routed_and_its_own_faults_are_502(tokenizer):
    backend = _backend(tokenizer, lambda r: httpx.Response(404, json={"error": {"message": "no such model"}}))
    with pytest.raises(AdapterGone):
        _run(backend)
    assert LORA not in backend._held["fake"]  # no more requests for it go there until the reconciler says so
    for status, expected in ((400, 400), (401, 502), (500, 502)):
        failing = _backend(tokenizer, lambda r, s=status: httpx.Response(s, json={"error": {"message": "x"}}))
        with pytest.raises(EngineError) as caught:
            _run(failing)
        assert caught.value.status == expected
