"""Where generation happens: in process (`local`), on remote TGI-compatible engines (`tgi`), or on vLLM
engines (`vllm`, in service/vllm/).

Both take a rendered prompt and a served task and return a `Generation`, or stream text pieces. A backend is
any object with this shape (a Protocol, not a class hierarchy). Both end every generation by the prompt
format's stop rule (`FRAME_STOPS`) as well as the client's own stop strings, so no model is served on text
after its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from inference.text_stream import TextStream
from service.engine import AdapterRefused, Engine
from service.generation import GeneratedToken, Generation, GenRequest, Sampling, TextPiece
from service.router import ServedTask
from specialist.adapters import check_adapter
from specialist.base_models import BaseModelRef
from specialist.errors import SpecialistError, error_line
from specialist.prompt_format import FRAME_STOPS, cut_at_frame

LOAD_TIMEOUT = 300  # seconds to load one adapter before the router gives up (and retries on its next sync)


@dataclass(frozen=True)
class GenParams:
    max_new_tokens: int
    sampling: Sampling = Sampling()
    stop: tuple[str, ...] = ()
    prompt_logprobs: bool = False  # score the prompt's own tokens too (TGI's decoder_input_details)

    def request(self, prompt_ids: list[int], adapter: str | None, on_text=None, prefix_len: int = 0) -> GenRequest:
        """These parameters for one prompt, ended by the frame's stop rule as well as the client's stops."""
        return GenRequest(
            prompt_ids=prompt_ids,
            prefix_len=prefix_len,
            adapter=adapter,
            max_new_tokens=self.max_new_tokens,
            sampling=self.sampling,
            stop=self.stop,
            end_markers=FRAME_STOPS,
            prompt_logprobs=self.prompt_logprobs,
            on_text=on_text,
        )


def require_loadable(path: Path, base_sha256: str | None) -> None:
    """Refuse, with the reason, an adapter an engine outside this process would refuse (the local engine's
    adapter cache makes the same check itself)."""
    found = check_adapter(path, base_sha256)
    found.require("serve it with that base model" if found.base_mismatch else "the previous route keeps serving")


class Backend(Protocol):
    def count_tokens(self, text: str) -> int: ...
    def keep_last_tokens(self, text: str, tokens: int) -> str:
        """`text` cut to its last `tokens` tokens (TGI's `truncate`)."""
        ...

    def load(self, name: str, path: Path) -> None: ...
    def unload(self, name: str) -> None: ...
    def permanent(self, error: Exception) -> bool:
        """Whether a `load` failure means the adapter itself is bad (refused until it changes), not a busy engine."""
        ...

    def share_cores(self, job_threads: int, job_running: Callable[[], bool], serve_threads: int | None = None) -> None:
        """Give up `job_threads` of this process's cores while `job_running()` (a training job shares the host)."""
        ...

    def report_batches(self, on_batch: Callable[[int, float], None]) -> None:
        """Call `on_batch(rows, seconds)` once per decoding step, for the batch-size metric."""
        ...

    def report_engines(self, on_engine: Callable[[str, bool, int], None]) -> None:
        """Call `on_engine(engine, up, adapters held)` whenever an engine's state is checked (engine backends)."""
        ...

    max_tasks: int | None  # most tasks it can serve at once (None: no limit); the router refuses tasks beyond it

    def unsupported(self, params: GenParams) -> list[str]:
        """The request parameters set in `params` that this backend cannot honour (the service answers 422)."""
        ...

    def ready(self) -> bool:
        """Whether generation can run on every routed adapter (engine backends: every engine holds them)."""
        ...

    def service_started(self) -> None:
        """The service answers requests now (engines elsewhere may fetch adapters from its /artifacts)."""
        ...

    def artifact(self, name: str) -> Path | None:
        """The folder of an adapter this backend's engines must hold, by its engine-side name (None: not one)."""
        ...

    async def generate(self, served: ServedTask, prompt: str, params: GenParams) -> Generation: ...
    def stream(self, served: ServedTask, prompt: str, params: GenParams) -> AsyncIterator[TextPiece | Generation]: ...
    def close(self) -> None: ...


class LocalBackend:
    """The in-process engine: one base model, all routed adapters resident, dynamic mixed-adapter batches."""

    def __init__(
        self,
        base: BaseModelRef,
        device: str = "auto",
        max_batch_size: int = 16,
        max_wait_ms: float = 5.0,
        max_resident: int = 64,
    ):
        from specialist.base_models import load_model, load_tokenizer, pick_device

        torch_device, dtype = pick_device(device)
        self.tokenizer = load_tokenizer(base, padding_side="left")
        self.engine = Engine(
            load_model(base, torch_device, dtype),
            self.tokenizer,
            base.content_sha256,
            max_batch_size,
            max_wait_ms,
            max_resident,
        )

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    def keep_last_tokens(self, text: str, tokens: int) -> str:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return text if len(ids) <= tokens else self.tokenizer.decode(ids[-tokens:])

    def load(self, name: str, path: Path) -> None:
        self.engine.load_adapter(name, path).result(timeout=LOAD_TIMEOUT)

    @staticmethod
    def permanent(error: Exception) -> bool:
        return isinstance(error, AdapterRefused)

    def unload(self, name: str) -> None:
        self.engine.unload_adapter(name)

    def share_cores(self, job_threads: int, job_running: Callable[[], bool], serve_threads: int | None = None) -> None:
        import torch

        serving = serve_threads or torch.get_num_threads()
        sharing = max(1, serving - job_threads)
        self.engine.threads_wanted = lambda: sharing if job_running() else serving  # asked every decoding step

    def report_batches(self, on_batch: Callable[[int, float], None]) -> None:
        self.engine.on_batch = on_batch

    max_tasks = None  # adapters beyond max_resident are evicted (LRU) and reloaded on use, not refused

    def report_engines(self, on_engine: Callable[[str, bool, int], None]) -> None:
        pass  # no engine outside this process

    def unsupported(self, params: GenParams) -> list[str]:
        return []

    def ready(self) -> bool:
        return True  # `load` returns once an adapter is resident

    def service_started(self) -> None:
        pass

    def artifact(self, name: str) -> Path | None:
        return None

    def _request(self, served: ServedTask, prompt: str, params: GenParams, on_text=None) -> GenRequest:
        ids = self.tokenizer(prompt)["input_ids"]
        return params.request(ids, served.engine_name, on_text, self.engine.decoder.prefix_len(prompt, ids))

    async def generate(self, served: ServedTask, prompt: str, params: GenParams) -> Generation:
        request = self._request(served, prompt, params)
        try:
            return await asyncio.wrap_future(self.engine.submit(request))
        except asyncio.CancelledError:  # timed out or shutting down: free its row of the batch
            request.cancelled.set()
            raise

    async def stream(self, served: ServedTask, prompt: str, params: GenParams) -> AsyncIterator[TextPiece | Generation]:
        """Text pieces as the engine produces them, then the final Generation."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()
        request = self._request(
            served, prompt, params, on_text=lambda piece: loop.call_soon_threadsafe(pieces.put_nowait, piece)
        )
        future = asyncio.wrap_future(self.engine.submit(request))
        future.add_done_callback(lambda _: pieces.put_nowait(None))
        try:
            while (piece := await pieces.get()) is not None:
                yield piece
            yield await future
        finally:  # the client went away mid-stream (the generator is closed): free its row of the batch
            request.cancelled.set()

    def close(self) -> None:
        self.engine.close()


def _token(t) -> GeneratedToken:
    """A remote engine's token (huggingface_hub's TextGenerationOutputToken) as ours."""
    return GeneratedToken(int(t.id), t.text, getattr(t, "logprob", None), bool(t.special))


class EngineError(SpecialistError):
    """A remote engine failed or refused: its 4xx for the client, else 502 (503: none can take it now)."""

    def __init__(self, problem: str, status: int = 502, fix: str | None = None):
        self.status = status if 400 <= status < 500 or status == 503 else 502
        super().__init__(problem, fix)

    @classmethod
    def from_exception(cls, error: Exception) -> EngineError:
        status = getattr(getattr(error, "response", None), "status_code", None)
        return cls(f"the generation engine answered: {error_line(error)}", status if isinstance(status, int) else 502)


class TGIBackend:
    """Forward to TGI-compatible engines (TGI, LoRAX, or another Specialist Factory) with the task's adapter id.

    The router validates the task against its own routes first: TGI silently answers from the base model for
    an unknown adapter id (TGI#2505). Engines are used round robin.
    """

    def __init__(self, urls: list[str], base: BaseModelRef | None = None):
        from huggingface_hub import AsyncInferenceClient

        if not urls:
            raise SpecialistError(
                "backend tgi needs at least one engine URL", "set tgi_urls in the serve config or --tgi-url"
            )
        self.clients = [AsyncInferenceClient(base_url=url.rstrip("/")) for url in urls]
        self._next = itertools.cycle(range(len(self.clients)))
        self.base_sha256 = base.content_sha256 if base else None

    def count_tokens(self, text: str) -> int:
        return len(text.split())  # the engines enforce their own token limits; this bounds only abuse

    def keep_last_tokens(self, text: str, tokens: int) -> str:
        return " ".join(text.split()[-tokens:])  # in words: the engines' tokenizer is not known here

    def load(self, name: str, path: Path) -> None:
        """Nothing to load here, but refuse what an engine would refuse, before routing to it."""
        require_loadable(path, self.base_sha256)

    def unload(self, name: str) -> None:
        pass

    @staticmethod
    def permanent(error: Exception) -> bool:
        return isinstance(error, SpecialistError)  # `load` only refuses: an adapter it refuses stays refused

    def share_cores(self, job_threads: int, job_running: Callable[[], bool], serve_threads: int | None = None) -> None:
        pass  # generation runs on the engines' hosts, not on the cores a job trains with

    def report_batches(self, on_batch: Callable[[int, float], None]) -> None:
        pass  # the engines batch; their own metrics report it

    max_tasks = None  # the engines' own limits apply

    def report_engines(self, on_engine: Callable[[str, bool, int], None]) -> None:
        pass  # the engines are not watched from here

    def unsupported(self, params: GenParams) -> list[str]:
        """What this backend does not forward to the engines (so it must not be accepted and dropped)."""
        s = params.sampling
        asked = {
            "presence_penalty": s.presence_penalty != 0.0,
            "logprobs": s.top_logprobs > 0,
            "grammar": s.grammar is not None,
            "prompt_logprobs": params.prompt_logprobs,
        }
        return [name for name, set_ in asked.items() if set_]

    def ready(self) -> bool:
        return True

    def service_started(self) -> None:
        pass

    def artifact(self, name: str) -> Path | None:
        return None

    def _kwargs(self, served: ServedTask, params: GenParams) -> dict:
        s = params.sampling
        kwargs = {"adapter_id": served.task, "max_new_tokens": params.max_new_tokens, "stop": list(params.stop) or None}
        sampled = s.temperature > 0
        if sampled:
            kwargs |= {"do_sample": True, "temperature": s.temperature, "seed": s.seed}
            if s.top_p < 1.0:  # TGI rejects top_p >= 1
                kwargs["top_p"] = s.top_p
        # TGI's own parameters of the same meaning, sent only when set (it rejects some neutral values, e.g. top_k
        # 0). top_k and typical_p only shape sampling: sent with a greedy request, they would make TGI sample.
        optional = {
            "top_k": s.top_k if sampled and s.top_k else None,
            "typical_p": s.typical_p if sampled and s.typical_p < 1.0 else None,
            "repetition_penalty": s.repetition_penalty if s.repetition_penalty != 1.0 else None,
            "frequency_penalty": s.frequency_penalty or None,
        }
        return kwargs | {k: v for k, v in optional.items() if v is not None}

    async def generate(self, served: ServedTask, prompt: str, params: GenParams) -> Generation:
        client = self.clients[next(self._next)]
        try:
            out = await client.text_generation(prompt, details=True, **self._kwargs(served, params))
        except Exception as e:  # noqa: BLE001 - the engine's failure, reported as such (not as our bug)
            raise EngineError.from_exception(e) from None
        text, cut = cut_at_frame(out.generated_text, params.stop, final=True)
        reason = "length" if not cut and str(out.details.finish_reason).endswith("length") else "stop"
        stop = next((s for s in params.stop if out.generated_text[len(text) :].startswith(s)), None) if cut else None
        tokens = [_token(t) for t in getattr(out.details, "tokens", None) or []]  # all, as the local engine keeps
        seed = getattr(out.details, "seed", None)
        return Generation(text, self.count_tokens(prompt), out.details.generated_tokens, reason, tokens, stop, seed)

    async def stream(self, served: ServedTask, prompt: str, params: GenParams) -> AsyncIterator[TextPiece | Generation]:
        client = self.clients[next(self._next)]
        # TGI includes a stop string in its text, and knows nothing of the frame's stop rule: the stream cuts both,
        # and holds back text that may still grow into a stop, as the local engine does.
        text = TextStream(params.stop, FRAME_STOPS)
        got: list[GeneratedToken] = []
        ran_out, seed, handed = False, None, 0
        try:
            chunks = await client.text_generation(prompt, stream=True, details=True, **self._kwargs(served, params))
            async with contextlib.aclosing(chunks):  # leaving early (at a stop) closes the engine's stream
                async for chunk in chunks:
                    if chunk.token.special:
                        continue
                    got.append(_token(chunk.token))
                    if piece := text.add_text(chunk.token.text):
                        yield TextPiece(piece, tuple(got[handed:]))
                        handed = len(got)
                    if text.stopped:
                        break
                    if chunk.details is not None:
                        ran_out = str(chunk.details.finish_reason).endswith("length")
                        seed = getattr(chunk.details, "seed", None)
        except Exception as e:  # noqa: BLE001
            raise EngineError.from_exception(e) from None
        if piece := text.finish():  # held back at the end: part of the answer, unless it begins a frame marker
            yield TextPiece(piece, tuple(got[handed:]))
        reason = text.finish_reason(ran_out)
        yield Generation(text.text, self.count_tokens(prompt), len(got), reason, got, text.stop_sequence, seed)

    def close(self) -> None:
        pass
