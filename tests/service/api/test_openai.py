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
        ("response_format", {"type": "json_object"}),
        ("logprobs", True),
        ("top_logprobs", 2),
        ("logit_bias", {"50256": -100}),
        ("presence_penalty", 0.5),
        ("frequency_penalty", 1.0),
        ("stream_options", {"include_usage": True}),
        ("n", 2),
        ("audio", {"voice": "alloy"}),
    ],
)
def test_a_field_that_would_change_the_answer_but_is_not_implemented_is_refused(service, field, value):
    body = {"model": "sentiment", "messages": [{"role": "user", "content": "a fine film"}], field: value}
    r = service.post("/v1/chat/completions", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == field and field in r.json()["error"]["message"]


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
    assert service.post("/v1/completions", json=completion | {"echo": True}).status_code == 422
    unknown = service.post("/v1/completions", json=completion | {"temprature": 0.5})  # a typo is not ignored
    assert unknown.status_code == 422 and unknown.json()["error"]["param"] == "temprature"


def test_streamed_and_whole_chat_content_are_the_same_text(service):
    import json

    body = {"model": "sentiment", "messages": [{"role": "user", "content": "a dull story"}], "max_tokens": 6}
    whole = service.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    with service.stream("POST", "/v1/chat/completions", json=body | {"stream": True}) as r:
        chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == whole
