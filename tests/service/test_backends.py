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
                token = SimpleNamespace(id=i, text=piece, logprob=-0.5, special=False)
                yield SimpleNamespace(token=token, details=details)

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
    assert [p.text for p in items[:-1]] == [" NEG"] and items[-1].text == " NEG" and items[-1].finish_reason == "stop"


def test_tgi_streams_release_held_back_text_that_never_became_a_marker():
    backend, _ = _backend([" line one", "\n", "line two"])
    items = _collect(backend.stream(SERVED, "prompt", GenParams(16)))
    assert "".join(p.text for p in items[:-1]) == " line one\nline two" == items[-1].text
    assert items[-1].finish_reason == "length"


def test_local_requests_carry_the_frame_stops(service):
    backend = service.state.backend
    served = service.state.router.resolve("sentiment")
    request = backend._request(served, served.prompt.render("a fine film"), GenParams(8, stop=("zz",)))
    assert request.stop == ("zz",) and request.end_markers == FRAME_STOPS


def test_tgi_stream_drops_a_marker_the_budget_cut_off():
    backend, _ = _backend([" NEG", "\n", "\n", "Input"])
    items = _collect(backend.stream(SERVED, "prompt", GenParams(4)))
    assert [p.text for p in items[:-1]] == [" NEG"] and items[-1].text == " NEG" and items[-1].finish_reason == "length"
    backend, _ = _backend([" NEG", "\n", "\n", "Input"])
    assert asyncio.run(backend.generate(SERVED, "prompt", GenParams(4))).text == " NEG"


# -- what the app asks of every backend (the Backend Protocol), without knowing which one it has ----------------


def test_every_backend_implements_the_whole_protocol():
    from service.backends import Backend, LocalBackend
    from service.vllm.backend import VLLMBackend

    methods = {name for name, value in vars(Backend).items() if not name.startswith("_") and callable(value)}
    attributes = set(Backend.__annotations__)
    assert {"permanent", "share_cores", "report_batches", "unsupported", "ready", "artifact"} <= methods
    assert attributes == {"max_tasks"}
    for cls in (LocalBackend, TGIBackend, VLLMBackend):
        assert all(callable(getattr(cls, name, None)) for name in methods), (cls, methods - set(dir(cls)))
        assert all(name in vars(cls) or name in cls.__init__.__code__.co_names for name in attributes), cls


def test_tgi_forwards_the_parameters_it_has_and_names_those_it_has_not():
    from inference.constraints import GrammarSpec
    from service.generation import Sampling

    backend, _ = _backend(["x"])
    shaped = Sampling(0.7, 0.9, 5, top_k=20, typical_p=0.8, repetition_penalty=1.2, frequency_penalty=0.5)
    kwargs = backend._kwargs(SERVED, GenParams(4, shaped))
    assert kwargs["top_k"] == 20 and kwargs["typical_p"] == 0.8 and kwargs["frequency_penalty"] == 0.5
    assert kwargs["repetition_penalty"] == 1.2 and kwargs["seed"] == 5
    assert "top_k" not in backend._kwargs(SERVED, GenParams(4)) and backend.unsupported(GenParams(4)) == []
    greedy = backend._kwargs(SERVED, GenParams(4, Sampling(0.0, top_k=20, typical_p=0.8)))
    assert "top_k" not in greedy and "typical_p" not in greedy  # they would make TGI sample
    dropped = Sampling(presence_penalty=0.5, top_logprobs=2, grammar=GrammarSpec("regex", "[0-9]+"))
    assert backend.unsupported(GenParams(4, dropped, prompt_logprobs=True)) == [
        "presence_penalty",
        "logprobs",
        "grammar",
        "prompt_logprobs",
    ]


def test_permanent_load_failures():
    from service.backends import LocalBackend
    from service.engine import AdapterRefused
    from specialist.errors import SpecialistError

    busy = SpecialistError("the engine is busy", "retry")
    assert LocalBackend.permanent(AdapterRefused("bad adapter", "fix it")) and not LocalBackend.permanent(busy)
    assert TGIBackend.permanent(busy) and not TGIBackend.permanent(OSError("disk"))  # TGI's load only refuses


def _local_over(engine):
    from service.backends import LocalBackend

    backend = LocalBackend.__new__(LocalBackend)  # no model: only the engine hooks are exercised
    backend.engine = engine
    return backend


def test_the_local_backend_gives_a_running_job_its_cores():
    engine = SimpleNamespace(threads_wanted=None)
    running = [False]
    _local_over(engine).share_cores(3, lambda: running[0], serve_threads=8)
    assert engine.threads_wanted() == 8
    running[0] = True
    assert engine.threads_wanted() == 5
    _local_over(engine).share_cores(16, lambda: True, serve_threads=8)
    assert engine.threads_wanted() == 1  # never below one thread


def test_the_local_backend_reports_each_batch():
    engine, seen = SimpleNamespace(on_batch=None), []
    _local_over(engine).report_batches(lambda rows, seconds: seen.append((rows, seconds)))
    engine.on_batch(4, 0.5)
    assert seen == [(4, 0.5)]


def test_the_tgi_backend_hooks_are_no_ops():
    backend, _ = _backend(["x"])
    called = []
    backend.share_cores(3, lambda: called.append("job_running") or True, serve_threads=8)
    backend.report_batches(lambda rows, seconds: called.append("on_batch"))
    asyncio.run(backend.generate(SERVED, "prompt", GenParams(4)))
    assert called == []
