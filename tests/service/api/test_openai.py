"""The OpenAI dialect: the openai client works unchanged; chat content and streamed stops."""

import pytest

from tests.service.conftest import _alone


def test_openai_client_works_unchanged(service):
    from openai import OpenAI

    client = OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=service)
    assert {m.id for m in client.models.list()} == {"sentiment", "sentiment-mixed"}
    text = "a dull story"
    completion = client.completions.create(model="sentiment", prompt=text, max_tokens=6)
    assert completion.choices[0].text.strip() == _alone(service, "sentiment", text)  # raw continuation, as OpenAI
    chat = client.chat.completions.create(model="sentiment", messages=[{"role": "user", "content": text}], max_tokens=6)
    assert chat.choices[0].message.content == _alone(service, "sentiment", text).strip()
    pieces = [
        c.choices[0].text for c in client.completions.create(model="sentiment", prompt=text, max_tokens=6, stream=True)
    ]
    assert "".join(pieces) == completion.choices[0].text
    chat_pieces = [
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="sentiment", messages=[{"role": "user", "content": text}], max_tokens=6, stream=True
        )
    ]
    assert "".join(chat_pieces).strip() == chat.choices[0].message.content
    from openai import NotFoundError

    with pytest.raises(NotFoundError):
        client.completions.create(model="nope", prompt="x")


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
    full = service.post("/v1/completions", json={"model": "sentiment", "prompt": "fine", "max_tokens": 8}).json()[
        "choices"
    ][0]["text"]
    stop = full[3:6] if len(full) > 6 else "zzz"
    body = {"model": "sentiment", "prompt": "fine", "max_tokens": 8, "stop": [stop], "stream": True}
    with service.stream("POST", "/v1/completions", json=body) as r:
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    text = "".join(_json.loads(e)["choices"][0]["text"] for e in events if e != "[DONE]")
    assert stop not in text and text == full[: full.find(stop)] if stop in full else text == full


def test_an_unknown_model_is_openais_model_not_found(service):
    r = service.post("/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "model_not_found" and error["param"] == "model"
    assert "served tasks: sentiment, sentiment-mixed" in error["message"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("tools", [{"type": "function", "function": {"name": "f"}}]),
        ("tool_choice", "auto"),
        ("response_format", {"type": "xml"}),
        ("logit_bias", {"50256": -100}),
        ("audio", {"voice": "alloy"}),
        ("n", 9),
        ("best_of", 3),
    ],
)
def test_a_field_that_would_change_the_answer_but_is_not_implemented_is_refused(service, field, value):
    body = {"model": "sentiment", "messages": [{"role": "user", "content": "a fine film"}], field: value}
    r = service.post("/v1/chat/completions", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"].split(".")[0] == field and field in r.json()["error"]["message"]


def test_neutral_values_of_unimplemented_fields_and_user_are_accepted(service):
    body = {
        "model": "sentiment",
        "messages": [{"role": "user", "content": "a fine film"}],
        "max_tokens": 4,
        "presence_penalty": 0,
        "logprobs": False,
        "response_format": {"type": "text"},
        "user": "analyst-7",
    }
    assert service.post("/v1/chat/completions", json=body).status_code == 200
    completion = {"model": "sentiment", "prompt": "a fine film", "max_tokens": 4, "echo": False, "best_of": 1}
    assert service.post("/v1/completions", json=completion).status_code == 200
    assert service.post("/v1/completions", json=completion | {"suffix": "!"}).status_code == 422
    unknown = service.post("/v1/completions", json=completion | {"temprature": 0.5})  # a typo is not ignored
    assert unknown.status_code == 422 and unknown.json()["error"]["param"] == "temprature"


def test_streamed_and_whole_chat_content_are_the_same_text(service):
    import json

    body = {"model": "sentiment", "messages": [{"role": "user", "content": "a dull story"}], "max_tokens": 6}
    whole = service.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    with service.stream("POST", "/v1/chat/completions", json=body | {"stream": True}) as r:
        chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == whole


def _client(service):
    from openai import OpenAI

    return OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=service)


def test_n_choices_and_a_list_of_prompts(service):
    client = _client(service)
    greedy = client.completions.create(model="sentiment", prompt=["a dull story", "a fine film"], n=2, max_tokens=4)
    assert [c.index for c in greedy.choices] == [0, 1, 2, 3]

    def single(prompt):
        return client.completions.create(model="sentiment", prompt=prompt, max_tokens=4).choices[0].text

    assert greedy.choices[0].text == greedy.choices[1].text == single("a dull story")
    assert greedy.choices[2].text == greedy.choices[3].text == single("a fine film")
    assert greedy.usage.completion_tokens >= 4 and greedy.usage.prompt_tokens > 0
    sampled = dict(model="sentiment", messages=[{"role": "user", "content": "a dull story"}], max_tokens=6)
    first = client.chat.completions.create(**sampled, n=3, temperature=1.5, seed=11)
    again = client.chat.completions.create(**sampled, n=3, temperature=1.5, seed=11)
    assert [c.message.content for c in first.choices] == [c.message.content for c in again.choices]
    one = client.chat.completions.create(**sampled, temperature=1.5, seed=12)  # choice 1 draws with seed + 1
    assert one.choices[0].message.content == first.choices[1].message.content


def test_logprobs_are_the_decoders_and_match_the_tgi_details(service):
    client = _client(service)
    chat = client.chat.completions.create(
        model="sentiment",
        messages=[{"role": "user", "content": "the film was really lovely"}],
        max_tokens=6,
        logprobs=True,
        top_logprobs=3,
    )
    content = chat.choices[0].logprobs.content
    tgi = service.post(
        "/generate",
        json={
            "inputs": "the film was really lovely",
            "parameters": {"adapter_id": "sentiment", "max_new_tokens": 6, "details": True},
        },
    ).json()["details"]["tokens"]
    assert [c.logprob for c in content] == [t["logprob"] for t in tgi[: len(content)]]
    for c in content:
        assert len(c.top_logprobs) == 3 and c.top_logprobs[0].logprob >= c.logprob - 1e-6  # the greedy choice leads
        assert c.bytes == list(c.token.encode())
    completion = client.completions.create(
        model="sentiment", prompt="the film was really lovely", max_tokens=6, logprobs=2
    )
    lp = completion.choices[0].logprobs
    assert lp.token_logprobs == [t["logprob"] for t in tgi[: len(lp.tokens)]]
    assert "".join(lp.tokens) == completion.choices[0].text and all(len(t) == 2 for t in lp.top_logprobs)
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)


def test_echo_include_usage_and_penalties(service):
    client = _client(service)
    text = "a dull story"
    echoed = client.completions.create(model="sentiment", prompt=text, max_tokens=4, echo=True)
    plain = client.completions.create(model="sentiment", prompt=text, max_tokens=4).choices[0].text
    assert echoed.choices[0].text == text + plain
    chunks = list(
        client.chat.completions.create(
            model="sentiment",
            messages=[{"role": "user", "content": text}],
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    body = {"model": "sentiment", "prompt": "x x x x x x x x", "max_tokens": 12, "temperature": 0}
    assert service.post("/v1/completions", json=body).json()["choices"][0]["logprobs"] is None  # only when asked
    # The penalties reach the decoder's sampling (whose arithmetic tests/inference/test_sampling.py checks).
    from service.api.openai import _params
    from service.config import CompletionRequest

    request = CompletionRequest.model_validate(body | {"frequency_penalty": 2.0, "presence_penalty": 0.5})
    sampling = _params(service.state, request, request.max_tokens, top_logprobs=0).sampling
    assert (sampling.frequency_penalty, sampling.presence_penalty) == (2.0, 0.5)
    assert service.post("/v1/completions", json=body | {"frequency_penalty": 2.0}).status_code == 200


SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["POS", "NEG"]}, "sure": {"type": "boolean"}},
    "required": ["label", "sure"],
    "additionalProperties": False,
}


def test_structured_output_always_parses_and_validates(service):
    """On a tiny model whose free text is never JSON, constrained decoding makes it JSON. A schema whose
    answers are bounded always ends before the budget; any object (json_object) is JSON whenever it ends."""
    import json

    client = _client(service)
    fmt = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": SCHEMA}}
    for text in ("a dull story", "a lovely film", "the plot was weak"):
        chat = client.chat.completions.create(
            model="sentiment", messages=[{"role": "user", "content": text}], max_tokens=40, response_format=fmt
        )
        choice = chat.choices[0]
        assert choice.finish_reason == "stop", choice  # the grammar ended it, not the budget
        parsed = json.loads(choice.message.content)
        assert set(parsed) == {"label", "sure"} and parsed["label"] in ("POS", "NEG")  # SCHEMA, checked by hand
        assert isinstance(parsed["sure"], bool)
        free = client.chat.completions.create(
            model="sentiment",
            messages=[{"role": "user", "content": text}],
            max_tokens=40,
            response_format={"type": "json_object"},
        ).choices[0]
        assert free.message.content.startswith("{")
        if free.finish_reason == "stop":
            assert isinstance(json.loads(free.message.content), dict)
    streamed = client.chat.completions.create(
        model="sentiment",
        messages=[{"role": "user", "content": "a dull story"}],
        max_tokens=40,
        response_format=fmt,
        stream=True,
    )
    assert json.loads("".join(c.choices[0].delta.content or "" for c in streamed if c.choices))["label"] in (
        "POS",
        "NEG",
    )


def test_an_invalid_schema_is_a_422_naming_response_format(service):
    body = {
        "model": "sentiment",
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "v", "schema": {"type": "bogus"}}},
    }
    r = service.post("/v1/chat/completions", json=body)
    assert r.status_code == 422 and r.json()["error"]["param"] == "response_format", r.text
