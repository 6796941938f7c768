"""Backends end every generation by the prompt format's stop rule, whatever the engine sends."""

import asyncio
from types import SimpleNamespace

from service.backends import GenParams, TGIBackend
from specialist.prompt_format import FRAME_STOPS


class _FakeTGIClient:
    """Answers like huggingface_hub's AsyncInferenceClient would for an engine that runs on past the answer."""

    def __init__(self, pieces: list[str]):
        self.pieces = pieces
        self.kwargs = None

    async def text_generation(self, prompt, stream=False, details=False, **kwargs):
        self.kwargs = kwargs
        if not stream:
            details = SimpleNamespace(finish_reason="length", generated_tokens=len(self.pieces))
            return SimpleNamespace(generated_text="".join(self.pieces), details=details)

        async def chunks():
            for i, piece in enumerate(self.pieces):
                last = i == len(self.pieces) - 1
                details = SimpleNamespace(finish_reason="length") if last else None
                yield SimpleNamespace(token=SimpleNamespace(text=piece, special=False), details=details)

        return chunks()


def _backend(pieces):
    backend = TGIBackend.__new__(TGIBackend)
    client = _FakeTGIClient(pieces)
    backend.clients, backend._next, backend.base_sha256 = [client], iter(lambda: 0, 1), None
    return backend, client


def _collect(agen):
    async def run():
        return [item async for item in agen]

    return asyncio.run(run())


SERVED = SimpleNamespace(task="sentiment")


def test_tgi_answers_are_cut_by_the_frame_stop_rule():
    pieces = [" NEG", "\n", "\n", "Output", ":", " POS", " and on"]
    backend, client = _backend(pieces)
    result = asyncio.run(backend.generate(SERVED, "prompt", GenParams(16)))
    assert result.text == " NEG" and result.finish_reason == "stop"
    assert client.kwargs["stop"] is None  # the rule is applied here; the engine gets only the client's own stops
    backend, _ = _backend(pieces)
    items = _collect(backend.stream(SERVED, "prompt", GenParams(16)))
    assert items[:-1] == [" NEG"] and items[-1].text == " NEG" and items[-1].finish_reason == "stop"


def test_tgi_streams_release_held_back_text_that_never_became_a_marker():
    backend, _ = _backend([" line one", "\n", "line two"])
    items = _collect(backend.stream(SERVED, "prompt", GenParams(16)))
    assert "".join(items[:-1]) == " line one\nline two" == items[-1].text and items[-1].finish_reason == "length"


def test_local_requests_carry_the_frame_stops(service):
    backend = service.state.backend
    served = service.state.router.resolve("sentiment")
    request = backend._request(served, served.prompt.render("a fine film"), GenParams(8, stop=("zz",)))
    assert request.stop == ("zz",) and request.end_markers == FRAME_STOPS


def test_tgi_stream_drops_a_marker_the_budget_cut_off():
    backend, _ = _backend([" NEG", "\n", "\n", "Input"])
    items = _collect(backend.stream(SERVED, "prompt", GenParams(4)))
    assert items[:-1] == [" NEG"] and items[-1].text == " NEG" and items[-1].finish_reason == "length"
    backend, _ = _backend([" NEG", "\n", "\n", "Input"])
    assert asyncio.run(backend.generate(SERVED, "prompt", GenParams(4))).text == " NEG"

