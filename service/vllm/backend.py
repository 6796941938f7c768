"""Backend `vllm`: generation on vLLM engines that hold exactly the routed adapters.

The registry is the source of truth, as for every backend: the router loads a new champion through `load`,
which returns only once **every** engine holds it (so its route never switches to an engine that lacks it),
and `unload` takes a retired one off every engine. A reconciler thread keeps each engine in line between
syncs: an engine that restarted (it holds nothing) is given the routed set back, and meanwhile gets no
requests for what it lacks; adapters of ours that nothing routes are unloaded. `/readyz` is ready only when
every engine holds every routed adapter.

Requests are validated and routed by the service before they reach an engine (an unknown task is a 404 here,
never forwarded), and the engine's tokens come back as ids, decoded by our tokenizer into the same
`RequestStream` the local engine uses: the same stop rule, finish reasons, logprobs and token details.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx

from inference.adapter_cache import AdapterGone
from inference.sampling import TokenScore
from service.backends import EngineError, GenParams, require_loadable
from service.config import ServeConfig
from service.generation import GeneratedToken, Generation, RequestStream, TextPiece
from service.router import ServedTask
from service.vllm.adapters import content_id, require_servable
from service.vllm.engine import EngineDown, EngineRefused, VLLMEngine, error_message, reason
from service.vllm.process import EngineProcess
from specialist.base_models import BaseModelRef
from specialist.errors import SpecialistError, error_line

log = logging.getLogger("specialist.service")
VLLM_API_KEY_ENV = "SPECIALIST_VLLM_API_KEY"  # the key engines elsewhere were started with (vLLM's --api-key)
RECONCILE_SECONDS = 1.0


def _choices_of(chunk: dict) -> list[dict]:
    """A completion chunk's (or whole answer's) choices. An engine that fails after its 200 says so in a chunk,
    or finishes with "abort"/"error": an EngineError, never a cut-off answer passed off as finished."""
    if "error" in chunk:
        raise EngineError(f"the vLLM engine failed mid-answer: {error_message(chunk['error'])}", 502)
    choices = chunk.get("choices") or []
    ended = next((c["finish_reason"] for c in choices if c.get("finish_reason") in ("abort", "error")), None)
    if ended:
        raise EngineError(f"the vLLM engine ended the answer with {ended!r}", 502)
    return choices


def _no_engine(problem: str) -> EngineError:
    """No engine can take the request right now (restarting, or down): 503, retry."""
    return EngineError(problem, 503, "retry shortly")


def _engine_error(response: httpx.Response) -> EngineError:
    """The engine's refusal (its 4xx passed on, else 502), with its own message."""
    # The request's own faults pass through; the engine's (its key refused, its bugs) are the service's: 502.
    status = response.status_code if response.status_code in (400, 413, 422, 429) else 502
    return EngineError(f"the vLLM engine answered {response.status_code}: {reason(response)}", status)


class VLLMBackend:
    def __init__(self, base: BaseModelRef, config: ServeConfig, log_dir: Path, engines: list[VLLMEngine] | None = None):
        from specialist.base_models import load_tokenizer

        self.tokenizer = load_tokenizer(base, padding_side="left")
        self._special = frozenset(self.tokenizer.all_special_ids)
        self._eos = frozenset(i for i in (self.tokenizer.eos_token_id,) if i is not None)
        self.base_sha256 = base.content_sha256
        self.max_lora_rank = config.vllm_max_lora_rank
        self.max_tasks = config.vllm_max_cpu_loras  # the router refuses tasks beyond this many
        self.process: EngineProcess | None = None
        if engines is None and config.vllm_urls:
            key = os.environ.get(VLLM_API_KEY_ENV)
            engines = [VLLMEngine(url, key, local_files=False) for url in config.vllm_urls]
        elif engines is None:
            self.process = EngineProcess(base, config, log_dir)
            engines = [VLLMEngine(self.process.url, self.process.api_key, local_files=True, label="local")]
            self.process.wait_ready(engines[0].healthy, config.vllm_start_seconds)
        self.engines = engines
        # Engines elsewhere fetch adapters from this service's /artifacts: not before it answers requests.
        self._may_fetch = threading.Event()
        self._names: dict[str, str] = {}  # the router's name of a loaded version -> its content id on the engines
        self._paths: dict[str, Path] = {}  # content id -> folder: the set every engine must hold
        self._held: dict[str, frozenset[str]] = {e.label: frozenset() for e in engines}  # as last seen
        self._up: dict[str, bool] = {e.label: False for e in engines}
        # Retired here but not yet taken off every engine. Only these are unloaded by the reconciler: an engine
        # may be shared by several replicas, and an adapter another one routes is not ours to take off.
        self._retired: set[str] = set()
        self._lock = threading.RLock()  # one adapter operation at a time: the router's sync, or the reconciler
        self._turn = itertools.count()
        self._on_engine: Callable[[str, bool, int], None] = lambda engine, up, adapters: None
        self._stop = threading.Event()
        self._reconcile_once()
        self._reconciler = threading.Thread(target=self._reconcile_loop, name="vllm-reconcile", daemon=True)
        self._reconciler.start()

    # -- the Backend protocol: adapters ----------------------------------------------------------------------

    def load(self, name: str, path: Path) -> None:
        require_loadable(path, self.base_sha256)
        require_servable(path, self.max_lora_rank)
        lora = content_id(path)
        with self._lock:
            self._names[name], self._paths[lora] = lora, Path(path)
            self._retired.discard(lora)
            for engine in self.engines:
                if lora not in self._held[engine.label]:
                    self._load_on(engine, lora, Path(path))

    def _load_on(self, engine: VLLMEngine, lora: str, path: Path) -> None:
        if not engine.local_files and not self._may_fetch.is_set():
            raise EngineDown(f"vLLM engine {engine.label} fetches adapters from this service, which is still starting")
        engine.load(lora, path)
        self._held[engine.label] = self._held[engine.label] | {lora}

    def unload(self, name: str) -> None:
        with self._lock:
            lora = self._names.pop(name, None)
            if lora is None or lora in self._names.values():  # another loaded version has the same content
                return
            self._paths.pop(lora, None)
            for engine in self.engines:
                self._held[engine.label] = self._held[engine.label] - {lora}
                try:
                    engine.unload(lora)
                except EngineDown as e:  # the reconciler takes it off once the engine answers
                    log.warning("%s", error_line(e))
                    self._retired.add(lora)

    @staticmethod
    def permanent(error: Exception) -> bool:
        """A bad or unservable adapter stays refused; an engine that did not answer is retried next sync."""
        return isinstance(error, SpecialistError) and not isinstance(error, EngineDown)

    def artifact(self, lora: str) -> Path | None:
        """The folder of an adapter the engines must hold, by its content id (for /artifacts)."""
        return self._paths.get(lora)

    def service_started(self) -> None:
        self._may_fetch.set()

    def ready(self) -> bool:
        """Every engine answers and holds every adapter the router loaded."""
        wanted = set(self._paths)
        return all(self._up[e.label] and wanted <= self._held[e.label] for e in self.engines)

    # -- keeping every engine in line ------------------------------------------------------------------------

    def _reconcile_loop(self) -> None:
        while not self._stop.wait(RECONCILE_SECONDS):
            try:
                self._reconcile_once()
            except Exception:  # noqa: BLE001 - retried on the next tick
                log.exception("vLLM engine reconcile failed")

    def _reconcile_once(self) -> None:
        for engine in self.engines:
            with self._lock:
                self._reconcile(engine)
        for e in self.engines:
            self._on_engine(e.label, self._up[e.label], len(self._held[e.label]))

    def _reconcile(self, engine: VLLMEngine) -> None:
        try:
            held = engine.adapters()
        except EngineDown:
            if self._up[engine.label]:
                log.error("vLLM engine %s is down: no requests go to it until it is back", engine.label)
            self._up[engine.label], self._held[engine.label] = False, frozenset()
            return
        if not self._up[engine.label]:
            log.info(
                "vLLM engine %s is up, holding %d of %d routed adapters", engine.label, len(held), len(self._paths)
            )
        self._up[engine.label], self._held[engine.label] = True, frozenset(held & set(self._paths))
        for lora in sorted((held & self._retired) - set(self._paths)):  # retired here while it did not answer
            try:
                engine.unload(lora)
            except EngineDown:
                return
        for lora, path in sorted(self._paths.items()):
            if lora not in self._held[engine.label]:  # e.g. the engine restarted: give it the routed set back
                try:
                    self._load_on(engine, lora, path)
                    log.info("vLLM engine %s: reloaded %s", engine.label, lora)
                except EngineDown as e:
                    log.warning("%s", error_line(e))
                    return  # it stopped answering: the next tick starts again
                except EngineRefused as e:  # this one failed: the others still go back
                    log.warning("%s", error_line(e))

    # -- the Backend protocol: generation --------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    def keep_last_tokens(self, text: str, tokens: int) -> str:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return text if len(ids) <= tokens else self.tokenizer.decode(ids[-tokens:])

    def share_cores(self, job_threads: int, job_running: Callable[[], bool], serve_threads: int | None = None) -> None:
        pass  # the engine's threads are fixed at its start (OMP_NUM_THREADS): lower --num-threads to leave room

    def report_batches(self, on_batch: Callable[[int, float], None]) -> None:
        pass  # vLLM batches inside the engine; its own /metrics report it

    def report_engines(self, on_engine: Callable[[str, bool, int], None]) -> None:
        self._on_engine = on_engine

    def unsupported(self, params: GenParams) -> list[str]:
        return ["typical_p"] if params.sampling.typical_p != 1.0 else []

    def _engine_for(self, served: ServedTask) -> tuple[VLLMEngine, str]:
        lora = self._names.get(served.engine_name)
        if lora is None:
            raise AdapterGone(served.engine_name)  # retired between routing and here: the caller re-routes
        holding = [e for e in self.engines if self._up[e.label] and lora in self._held[e.label]]
        if not holding:
            raise _no_engine(f"no vLLM engine holds task {served.task!r}'s adapter right now (an engine is restarting)")
        return holding[next(self._turn) % len(holding)], lora

    def _body(self, lora: str, prompt: str, params: GenParams) -> dict:
        s = params.sampling
        body = {
            "model": lora,
            "prompt": prompt,
            "max_tokens": params.max_new_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": s.seed,
            "logprobs": s.top_logprobs,  # 0: the chosen token's own logprob
            "return_token_ids": True,
            "return_tokens_as_token_ids": True,
            "repetition_penalty": s.repetition_penalty,
            "presence_penalty": s.presence_penalty,
            "frequency_penalty": s.frequency_penalty,
            "stream": True,
        }
        if s.top_k:
            body["top_k"] = s.top_k
        if s.grammar is not None:
            kind = "json" if s.grammar.kind == "json_schema" else "regex"
            # Compact JSON, as the local backend's grammar makes it, is the engine's setting (engine_command).
            body["structured_outputs"] = {kind: json.loads(s.grammar.value) if kind == "json" else s.grammar.value}
        if params.prompt_logprobs:
            body["prompt_logprobs"] = 0
        return body

    def _stream_for(self, prompt: str, params: GenParams, on_text=None) -> RequestStream:
        request = params.request(self.tokenizer(prompt)["input_ids"], None, on_text)  # the adapter is the engine's
        return RequestStream(request, self.tokenizer, self._special)

    def _feed(self, stream: RequestStream, choice: dict) -> None:
        """One completion choice (or stream chunk) of vLLM's into the stream: ids, logprobs, alternatives."""
        logprobs = choice.get("logprobs") or {}
        ids = choice.get("token_ids") or []
        chosen = logprobs.get("token_logprobs") or [None] * len(ids)
        tops = logprobs.get("top_logprobs") or [None] * len(ids)
        k = stream.request.sampling.top_logprobs
        for token, logprob, top in zip(ids, chosen, tops):
            if token in self._eos or stream.output.stopped:
                continue
            alternatives = sorted(((int(t.split(":")[1]), lp) for t, lp in (top or {}).items()), key=lambda a: -a[1])
            stream.on_token(token, TokenScore(logprob, tuple(alternatives[:k])))
        prompt = choice.get("prompt_logprobs")
        if prompt and stream.request.prompt_logprobs:
            ids = choice.get("prompt_token_ids") or stream.request.prompt_ids
            stream.prefill = [
                GeneratedToken(
                    i,
                    self.tokenizer.decode([i]),
                    (scores or {}).get(str(i), {}).get("logprob"),
                    i in self._special,
                )
                for i, scores in zip(ids, prompt)
            ]

    async def generate(self, served: ServedTask, prompt: str, params: GenParams) -> Generation:
        async for item in self.stream(served, prompt, params):
            if isinstance(item, Generation):
                return item
        raise AssertionError("a stream ends with its Generation")

    async def stream(self, served: ServedTask, prompt: str, params: GenParams) -> AsyncIterator[TextPiece | Generation]:
        """A stream from the engine, also for a whole answer: vLLM takes at most 4 stop strings, fewer than the
        frame's end markers, so RequestStream applies the stop rule, and leaving the stream at a stop makes
        the engine stop generating (it aborts a request whose client is gone). The one exception: prompt
        logprobs come only in a whole answer, so such a request is sent whole (and cut here)."""
        engine, lora = self._engine_for(served)
        pieces: list[TextPiece] = []
        stream = self._stream_for(prompt, params, on_text=pieces.append)
        body = self._body(lora, prompt, params) | {"stream": not params.prompt_logprobs}
        last: dict = {}
        try:
            async with contextlib.aclosing(self._choices(engine, lora, served, body)) as choices:
                async for choice in choices:
                    self._feed(stream, choice)
                    last = choice
                    while pieces:
                        yield pieces.pop(0)
                    if stream.output.stopped:
                        break  # closing the engine's stream stops its generation
        except httpx.HTTPError as e:
            raise _no_engine(f"vLLM engine {engine.label} did not answer ({type(e).__name__}); retry") from None
        result = stream.finish()
        result.finish_reason = stream.output.finish_reason(last.get("finish_reason") == "length")
        while pieces:
            yield pieces.pop(0)
        yield result

    async def _choices(self, engine: VLLMEngine, lora: str, served: ServedTask, body: dict) -> AsyncIterator[dict]:
        """vLLM's completion choices for `body`: one per stream chunk, or the whole answer's."""
        async with engine.client().stream("POST", "/v1/completions", json=body) as response:
            if response.status_code == 404:  # it no longer holds the adapter (retired, or it restarted)
                self._held[engine.label] = self._held[engine.label] - {lora}
                raise AdapterGone(served.engine_name)
            if response.status_code != 200:
                await response.aread()
                raise _engine_error(response)
            if not body["stream"]:
                await response.aread()
                for choice in _choices_of(response.json()):
                    yield choice
                return
            async for line in response.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    for choice in _choices_of(json.loads(line[6:])):
                        yield choice

    def close(self) -> None:
        self._stop.set()
        if self.process is not None:
            self.process.close()
        for engine in self.engines:
            engine.close()
