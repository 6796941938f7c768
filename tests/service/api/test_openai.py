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
