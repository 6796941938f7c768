"""The TGI dialect (service/api/tgi.py): /generate, its compat route /, and /generate_stream's SSE events; the
task is the adapter_id."""

import json

import pytest

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


def test_details_are_the_real_tokens(service):
    """Ids, texts and logprobs of the generated tokens, not placeholders: the texts add up to the answer."""
    tokenizer = service.state.backend.tokenizer
    details = service.post("/generate", json=_body(details=True)).json()["details"]
    tokens = details["tokens"]
    assert len(tokens) == details["generated_tokens"] and details["prefill"] == [] and details["seed"] is None
    assert [t["text"] for t in tokens] == [tokenizer.decode([t["id"]]) for t in tokens]
    assert len({t["id"] for t in tokens}) > 1 or len(tokens) == 1  # not one placeholder id repeated
    assert all(t["logprob"] < 0 and not t["special"] for t in tokens)
    sampled = service.post("/generate", json=_body(details=True, do_sample=True)).json()["details"]
    assert isinstance(sampled["seed"], int)  # the seed a sampled answer can be replayed with
    replayed = service.post("/generate", json=_body(details=True, do_sample=True, seed=sampled["seed"])).json()
    assert replayed["details"]["tokens"] == sampled["tokens"]


def test_a_matched_stop_sequence_is_reported_as_one(service):
    first = service.post("/generate", json=_body(details=True)).json()
    stop = first["details"]["tokens"][1]["text"]  # the second token's text: generation stops there
    stopped = service.post("/generate", json=_body(details=True, stop=[stop])).json()
    assert stopped["details"]["finish_reason"] == "stop_sequence"


def test_return_full_text_prepends_the_inputs(service):
    plain = service.post("/generate", json=_body()).json()["generated_text"]
    full = service.post("/generate", json=_body(return_full_text=True)).json()["generated_text"]
    assert full == TEXT + plain


@pytest.mark.parametrize(
    "parameter, value",
    [
        ("best_of", 2),
        ("watermark", True),
    ],
)
def test_an_unimplemented_parameter_is_refused_naming_it(service, parameter, value):
    r = service.post("/generate", json=_body(**{parameter: value}))
    assert r.status_code == 422 and parameter in r.text
    assert service.post("/generate", json=_body(**{parameter: None})).status_code == 200  # unset: fine


# What huggingface_hub's InferenceClient.text_generation sends for text_generation(TEXT, adapter_id=...,
# max_new_tokens=6): every parameter, the unset ones as null or false.
HUB_DEFAULTS = {
    "adapter_id": "sentiment",
    "best_of": None,
    "decoder_input_details": False,
    "details": False,
    "do_sample": False,
    "frequency_penalty": None,
    "grammar": None,
    "max_new_tokens": 6,
    "repetition_penalty": None,
    "return_full_text": False,
    "seed": None,
    "stop": [],
    "temperature": None,
    "top_k": None,
    "top_n_tokens": None,
    "top_p": None,
    "truncate": None,
    "typical_p": None,
    "watermark": False,
}


def test_what_huggingface_hubs_client_sends_by_default_is_accepted(service):
    r = service.post("/generate", json={"inputs": TEXT, "parameters": HUB_DEFAULTS, "stream": False})
    assert r.status_code == 200, r.text
    assert r.json()["generated_text"] == service.post("/generate", json=_body()).json()["generated_text"]
    unknown = service.post("/generate", json={"inputs": TEXT, "parameters": HUB_DEFAULTS | {"top_q": 1}})
    assert unknown.status_code == 422 and "top_q" in unknown.text


def test_token_logprobs_are_the_models_own(service, tiny_model_dir):
    """Each reported logprob is log-softmax of a direct forward pass over prompt + the tokens before it."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tokens = service.post("/generate", json=_body(details=True)).json()["details"]["tokens"]
    state = service.state
    served = state.router.resolve("sentiment")
    prompt_ids = state.backend.tokenizer(state.render(served, TEXT))["input_ids"]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), served.path).eval()
    generated = [t["id"] for t in tokens]
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + generated])).logits[0].float()
    expected = [torch.log_softmax(logits[len(prompt_ids) - 1 + i], -1)[g].item() for i, g in enumerate(generated)]
    assert len(expected) == len(tokens) and all(abs(t["logprob"] - x) < 2e-3 for t, x in zip(tokens, expected))


def test_top_n_tokens_top_k_and_penalties_are_honoured(service):
    details = service.post("/generate", json=_body(details=True, top_n_tokens=3)).json()["details"]
    assert len(details["top_tokens"]) == len(details["tokens"]) and all(len(t) == 3 for t in details["top_tokens"])
    for chosen, top in zip(details["tokens"], details["top_tokens"]):  # greedy: the chosen token is the likeliest
        assert top[0]["id"] == chosen["id"] and top[0]["logprob"] >= top[1]["logprob"] >= top[2]["logprob"]
    with service.stream("POST", "/generate_stream", json=_body(top_n_tokens=2)) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert all(len(e["top_tokens"]) == 2 for e in events)
    greedy_k1 = _body(details=True, do_sample=True, top_k=1, seed=3)  # top_k=1 sampling is greedy
    assert [t["id"] for t in service.post("/generate", json=greedy_k1).json()["details"]["tokens"]] == [
        t["id"] for t in details["tokens"]
    ]
    for penalty in ({"repetition_penalty": 1.3}, {"frequency_penalty": 1.0}):
        assert service.post("/generate", json=_body(**penalty)).status_code == 200


def test_a_grammar_constrains_the_answer(service):
    import re

    regex = _body(grammar={"type": "regex", "value": "(POS|NEG)!"}, max_new_tokens=10)
    assert re.fullmatch("(POS|NEG)!", service.post("/generate", json=regex).json()["generated_text"])
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    answer = service.post("/generate", json=_body(grammar={"type": "json", "value": schema}, max_new_tokens=30))
    assert isinstance(json.loads(answer.json()["generated_text"])["ok"], bool)
    bad = service.post("/generate", json=_body(grammar={"type": "regex", "value": "(unclosed"}))
    assert bad.status_code == 422 and "regex" in bad.json()["error"]


def test_a_per_task_base_url_serves_clients_that_cannot_name_an_adapter(service):
    """The frozen `text-generation` client posts every request to its base URL: /tgi/<task> is one per task
    (tests/service/test_serve_e2e.py runs the client itself against a live server)."""
    plain = service.post("/generate", json=_body(details=True)).json()
    sent = {"inputs": TEXT, "parameters": {"max_new_tokens": 6, "details": True, "watermark": False}, "stream": False}
    via_url = service.post("/tgi/sentiment", json=sent).json()
    assert via_url == [plain]
    mismatch = service.post("/tgi/sentiment", json={"inputs": TEXT, "parameters": {"adapter_id": "other"}})
    assert mismatch.status_code == 422 and "differs" in mismatch.json()["error"]
    assert service.post("/tgi/nope", json=sent).status_code == 404


def test_decoder_input_details_are_the_prompts_own_logprobs(service, tiny_model_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    details = service.post("/generate", json=_body(details=True, decoder_input_details=True)).json()["details"]
    prefill = details["prefill"]
    state = service.state
    served = state.router.resolve("sentiment")
    ids = state.backend.tokenizer(state.render(served, TEXT))["input_ids"]
    assert [t["id"] for t in prefill] == ids and prefill[0]["logprob"] is None  # the first token has no context
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), served.path).eval()
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    assert all(abs(t["logprob"] - logp[i - 1, t["id"]].item()) < 2e-3 for i, t in enumerate(prefill) if i)
    assert service.post("/generate", json=_body(details=True)).json()["details"]["prefill"] == []


def test_typical_p_samples_and_replays(service):
    body = _body(details=True, do_sample=True, typical_p=0.5, seed=5)
    first, again = (service.post("/generate", json=body).json() for _ in range(2))
    assert first["generated_text"] == again["generated_text"]


def test_truncate_keeps_the_last_tokens_of_the_input(service):
    tokenizer = service.state.backend.tokenizer
    long_input = "this was a very long and winding review of " + TEXT
    ids = tokenizer(long_input, add_special_tokens=False)["input_ids"]
    tail = tokenizer.decode(ids[-5:])
    cut = service.post(
        "/generate",
        json={"inputs": long_input, "parameters": {"adapter_id": "sentiment", "max_new_tokens": 6, "truncate": 5}},
    )
    alone = service.post(
        "/generate", json={"inputs": tail, "parameters": {"adapter_id": "sentiment", "max_new_tokens": 6}}
    )
    assert cut.json() == alone.json()
