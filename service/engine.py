"""The local generation engine: one base model, many resident LoRA adapters, dynamic mixed-adapter batches.

Requests for any adapters queue up; one worker thread decodes them in one running batch, a token per step
(continuous batching): a request that arrives joins at the next step (up to `max_batch_size`; an idle server
waits at most `max_wait_ms` for company), and a finished one leaves at once. The shared decoder
(`inference.decoder`) applies each adapter to its own rows -- there is no global "active adapter" to
switch -- and computes each task's shared prompt prefix once per adapter. Adapter loads and unloads
(`inference.adapter_cache`) run on the same thread between steps, so a swap never races a forward pass.
Text is handed to each request as its tokens are produced (streaming, `inference.text_stream`); each row
stops on its own EOS, stop string or token budget, or when its client goes away (`GenRequest.cancelled`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import torch

from inference.adapter_cache import BASE_ADAPTER, AdapterCache, AdapterGone, AdapterRefused
from inference.constraints import Constraint
from inference.decoder import Decoder, DecodeRow
from inference.kv_cache import RunningBatch
from service.generation import GeneratedToken, GenRequest, RequestStream
from specialist.errors import SpecialistError

# What the rest of the service imports from here (the adapter names and errors live with the adapter cache;
# requests and results in service.generation).
__all__ = ["BASE_ADAPTER", "AdapterGone", "AdapterRefused", "Engine"]


@dataclass
class _Command:
    """Adapter load/unload, run by the worker between decoding steps."""

    action: str
    name: str
    path: Path | None = None
    future: Future = field(default_factory=Future)


class Engine:
    def __init__(
        self,
        base_model,
        tokenizer,
        base_sha256: str,
        max_batch_size: int = 16,
        max_wait_ms: float = 5.0,
        max_resident: int = 64,
    ):
        self.decoder = Decoder(base_model, tokenizer)
        self.tokenizer = tokenizer
        self._vocab = base_model.get_output_embeddings().weight.shape[0]  # the logits' width, for grammar masks
        self._special = frozenset(tokenizer.all_special_ids)  # once: every generated token is looked up in it
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.adapters = AdapterCache(self.decoder, base_sha256, max_resident)
        self._queue: queue.Queue = queue.Queue()
        self._pending: list[GenRequest] = []
        self._batch: RunningBatch | None = None  # rows being decoded now
        self._stop = threading.Event()
        self.batch_sizes: deque[int] = deque(maxlen=10_000)  # rows per recent decoding step, for tests and diagnostics
        self.on_batch: Callable[[int, float], None] | None = None  # (rows in the step, seconds), once per step
        self.threads_wanted: Callable[[], int] | None = None  # torch threads to decode with now (asked every step)
        self.threads = 0  # torch threads the last step decoded with
        self._thread = threading.Thread(target=self._run, name="generation-engine", daemon=True)
        self._thread.start()

    # -- public API (any thread) ---------------------------------------------------------------------------

    @property
    def resident(self) -> dict[str, Path]:
        """Adapters loaded now (name -> dir), least recently used first."""
        return self.adapters.resident

    def submit(self, request: GenRequest) -> Future:
        if self._stop.is_set():
            raise SpecialistError("the generation engine is shutting down", "retry against a running service")
        # Counted before it is queued: an adapter a queued request needs is never unloaded under it.
        self.adapters.acquire(request.adapter, reload=lambda name, path: self._queue.put(_Command("load", name, path)))
        self._queue.put(request)
        return request.future

    def load_adapter(self, name: str, path: Path) -> Future:
        """Validate and load (between steps) an adapter the router is about to serve. The future fails with
        AdapterRefused if the adapter is unusable, or another SpecialistError if it could not be loaded now."""
        self.adapters.route(name, path)
        cmd = _Command("load", name, Path(path))
        self._queue.put(cmd)
        return cmd.future

    def unload_adapter(self, name: str) -> Future:
        """The router no longer serves `name`: unload it once its queued requests have finished."""
        self.adapters.unroute(name)
        cmd = _Command("unload", name)
        self._queue.put(cmd)
        return cmd.future

    def close(self) -> None:
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout=10)

    # -- worker thread ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:  # noqa: BLE001 - the loop must survive anything; futures carry errors to callers
                logging.getLogger("specialist.service").exception("generation engine step failed")
        # Shutting down: nobody waits forever for an answer that will not come.
        gone = SpecialistError(
            "the generation engine shut down before this request finished", "retry against a running service"
        )
        while (item := self._next_item(block=False)) is not None:
            if isinstance(item, GenRequest):
                self._pending.append(item)
            elif isinstance(item, _Command) and not item.future.done():
                item.future.set_exception(gone)
        running = [stream.request for stream in self._batch.keys] if self._batch is not None else []
        self._fail(running + self._pending, gone)
        self._batch, self._pending = None, []

    def _step(self) -> None:
        """One scheduling round: take in commands and requests, then advance the running batch by one token.

        Continuous batching: requests that arrive while a batch runs join it at the next step (up to
        max_batch_size); finished rows leave at once and their clients get their answers right away."""
        self._fit_threads()
        if self._batch is None and not self._pending:
            item = self._next_item(block=True)  # idle: sleep until something arrives
            if item is None:
                return
            self._accept(item)
            # Give concurrent requests a moment to join; an idle server pays at most max_wait once.
            deadline = time.perf_counter() + self.max_wait
            while len(self._pending) < self.max_batch_size:
                extra = self._next_item(block=True, timeout=max(0.0, deadline - time.perf_counter()))
                if extra is None:
                    break
                self._accept(extra)
        while (item := self._next_item(block=False)) is not None:
            self._accept(item)
        self._admit()
        if self._batch is not None:
            self._advance()

    def _fit_threads(self) -> None:
        """More torch threads than free cores is ruinous on a CPU: a thread waiting at a barrier for one that was
        descheduled turns a 0.1 s step into seconds. So the service gives up cores while a training job runs."""
        wanted = self.threads_wanted() if self.threads_wanted is not None else None
        if wanted and wanted != torch.get_num_threads():  # this thread's setting: the one that runs the model
            torch.set_num_threads(wanted)
        self.threads = torch.get_num_threads()

    def _accept(self, item) -> None:
        if isinstance(item, _Command):
            self._execute(item)
        elif isinstance(item, GenRequest):
            self._pending.append(item)

    def _next_item(self, block: bool, timeout: float | None = None):
        try:
            return self._queue.get(block=block, timeout=timeout) if block else self._queue.get_nowait()
        except queue.Empty:
            return None

    def _execute(self, cmd: _Command) -> None:
        try:
            if cmd.action == "load":
                self.adapters.load(cmd.name, cmd.path)
            elif cmd.action == "unload":
                self.adapters.unload(cmd.name)
            cmd.future.set_result(None)
        except Exception as e:  # noqa: BLE001 - handed to the caller through the future
            cmd.future.set_exception(e)

    def _prefill_tokens(self, r: GenRequest) -> list[GeneratedToken]:
        logprobs = self.decoder.prompt_logprobs(r.prompt_ids, r.adapter)
        return [
            GeneratedToken(i, self.tokenizer.decode([i]), lp, i in self._special)
            for i, lp in zip(r.prompt_ids, logprobs)
        ]

    def _admit(self) -> None:
        """Move pending requests (oldest first) into the running batch, as far as it has room."""
        room = self.max_batch_size - (len(self._batch) if self._batch is not None else 0)
        if room <= 0 or not self._pending:
            return
        taken, self._pending = self._pending[:room], self._pending[room:]
        for r in taken:  # a future its caller cancelled (timeout, shutdown) counts as a client gone
            if not r.future.set_running_or_notify_cancel():
                r.cancelled.set()
        missing = [r for r in taken if not self.adapters.is_resident(r.adapter)]
        for r in missing:  # its reload failed: tell that client, run the rest
            self._fail([r], AdapterGone(f"adapter {r.adapter!r} is not loaded", "route the request again"))
        gone = [r for r in taken if r not in missing and r.cancelled.is_set()]
        self._fail(gone, SpecialistError("the client went away before generation started"))
        taken = [r for r in taken if r not in missing and r not in gone]
        if not taken:
            return
        streams = [RequestStream(r, self.tokenizer, self._special) for r in taken]
        try:
            rows = []
            for r in taken:
                self.adapters.touch(r.adapter)
                s = r.sampling
                generator = (
                    torch.Generator(self.decoder.device).manual_seed(s.seed)
                    if s.seed is not None and s.temperature > 0
                    else None
                )
                rows.append(
                    DecodeRow(
                        r.prompt_ids,
                        r.max_new_tokens,
                        r.adapter,
                        r.prefix_len,
                        temperature=s.temperature,
                        top_p=s.top_p,
                        generator=generator,
                        top_k=s.top_k,
                        typical_p=s.typical_p,
                        repetition_penalty=s.repetition_penalty,
                        presence_penalty=s.presence_penalty,
                        frequency_penalty=s.frequency_penalty,
                        top_logprobs=s.top_logprobs,
                        constraint=Constraint(s.grammar, self.tokenizer, self._vocab) if s.grammar else None,
                    )
                )
                if r.prompt_logprobs:  # TGI's decoder_input_details: one forward pass over the prompt
                    streams[len(rows) - 1].prefill = self._prefill_tokens(r)
            self._batch = self.decoder.admit(self._batch, rows, streams)
        except Exception as e:  # noqa: BLE001 - every waiting client gets the error instead of hanging
            self._fail(taken, e)

    def _advance(self) -> None:
        started = time.perf_counter()
        # Taken before the step: rows that finish in a failing step need an answer too.
        requests = [stream.request for stream in self._batch.keys]
        self.batch_sizes.append(len(requests))
        try:
            finished, self._batch = self.decoder.step(
                self._batch, on_token=lambda stream, token, score: stream.on_token(token, score)
            )
        except Exception as e:  # noqa: BLE001 - every client of the batch gets the error instead of hanging
            self._batch = None
            self._fail(requests, e)
            return
        try:
            for stream, _ in finished:
                if not stream.request.future.done():
                    stream.request.future.set_result(stream.finish())
        finally:
            self.adapters.release([stream.request.adapter for stream, _ in finished])
        if self.on_batch is not None:
            self.on_batch(len(requests), time.perf_counter() - started)

    def _fail(self, requests: list[GenRequest], error: Exception) -> None:
        try:
            for r in requests:
                if not r.future.done():
                    r.future.set_exception(error)
        finally:
            self.adapters.release([r.adapter for r in requests])
