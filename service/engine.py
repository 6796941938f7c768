"""The local generation engine: one base model, many resident LoRA adapters, dynamic mixed-adapter batches.

Requests for any adapters queue up; one worker thread takes the oldest, gathers every other queued request
with the same sampling settings (up to `max_batch_size`, waiting at most `max_wait_ms` for company) and runs
them as one `generate` with `adapter_names=[...]` -- never a per-request `set_adapter`, which is global
state. Adapter loads and unloads are executed by the same thread between batches, so a swap never races a
forward pass. Tokens are handed to each request as they are produced (streaming), and each row stops on its
own EOS, stop string or token budget.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from specialist.adapters import lora_only_problems
from specialist.errors import SpecialistError

BASE_ADAPTER = "__base__"


class AdapterGone(SpecialistError):
    """The adapter was unloaded between routing and submission (a swap): route again and resubmit."""


class AdapterRefused(SpecialistError):
    """The adapter itself is unusable (not LoRA-only, corrupt, another base model): retrying will not help."""


@dataclass(frozen=True)
class Sampling:
    """Rows of one batch share these (transformers' generate takes one config per call)."""

    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or stop string) or "length"
    token_ids: list[int] = field(default_factory=list)


@dataclass
class GenRequest:
    prompt_ids: list[int]
    adapter: str
    max_new_tokens: int
    sampling: Sampling = Sampling()
    stop: tuple[str, ...] = ()
    on_text: Callable[[str, int], None] | None = None  # (new text piece, token id) as tokens arrive
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class _Command:
    """Adapter load/unload, run by the worker between batches."""

    action: str
    name: str
    path: Path | None = None
    future: Future = field(default_factory=Future)


class _RowTracker(BaseStreamer):
    """Receives each step's tokens for the whole batch and keeps per-row text, stops and callbacks."""

    def __init__(self, engine: "Engine", requests: list[GenRequest]):
        self.engine, self.requests = engine, requests
        self.ids: list[list[int]] = [[] for _ in requests]
        self.text = [""] * len(requests)
        self.emitted = [0] * len(requests)  # characters already streamed per row
        self.done = [False] * len(requests)
        self.reason = ["length"] * len(requests)
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # generate first hands over the prompt ids
            self._prompt_seen = True
            return
        for row, token in enumerate(value.view(-1).tolist()):
            if self.done[row]:
                continue
            req = self.requests[row]
            if token in self.engine.eos_ids:
                self.done[row], self.reason[row] = True, "stop"
                continue
            self.ids[row].append(token)
            text = self.engine.tokenizer.decode(self.ids[row], skip_special_tokens=True)
            cut = _first_stop(text, req.stop)
            if cut is not None:
                text = text[:cut]
                self.done[row], self.reason[row] = True, "stop"
            self.text[row] = text
            self._emit(row, token)
            if len(self.ids[row]) >= req.max_new_tokens:
                self.done[row] = True

    def _emit(self, row: int, token: int, final: bool = False) -> None:
        text = self.text[row]
        end = len(text)
        if not final and not self.done[row]:
            # Hold back what might still change: a partly decoded character, or the start of a stop string.
            if text.endswith("\ufffd"):
                return
            end -= _stop_prefix_len(text, self.requests[row].stop)
        piece = text[self.emitted[row] : end]
        if piece:
            self.emitted[row] = end
            if self.requests[row].on_text is not None:
                self.requests[row].on_text(piece, token)

    def flush(self) -> None:
        """Hand over whatever was held back, so the streamed pieces always add up to the final text."""
        for row in range(len(self.requests)):
            self._emit(row, -1, final=True)

    def end(self) -> None:
        pass


class _RowsDone(StoppingCriteria):
    def __init__(self, tracker: _RowTracker):
        self.tracker = tracker

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        return torch.tensor(self.tracker.done, dtype=torch.bool, device=input_ids.device)


def _stop_prefix_len(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest tail of `text` that begins some stop string (it may yet become one)."""
    best = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), best, -1):
            if stop.startswith(text[-k:]):
                best = k
                break
    return best


def _first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    hits = [text.find(s) for s in stops if s and s in text]
    return min(hits) if hits else None


class Engine:
    def __init__(self, base_model, tokenizer, base_sha256: str, max_batch_size: int = 16, max_wait_ms: float = 5.0,
                 max_resident: int = 64):  # fmt: skip
        self.model = base_model.eval()
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"  # generation appends on the right
        configured = getattr(getattr(base_model, "generation_config", None), "eos_token_id", None)
        configured = configured if isinstance(configured, list) else [configured] if configured is not None else []
        self.eos_ids = sorted({tokenizer.eos_token_id, *configured} - {None})  # some models stop on several
        self.base_sha256 = base_sha256
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_resident = max_resident
        self.device = next(base_model.parameters()).device
        self.resident: OrderedDict[str, Path] = OrderedDict()  # adapter name -> dir, least recently used first
        self.in_use: dict[str, int] = {}  # queued or running requests per adapter (guarded by _lock)
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._pending: list[GenRequest] = []
        self._stop = threading.Event()
        self.batch_sizes: deque[int] = deque(maxlen=10_000)  # recent batch sizes, for tests and diagnostics
        self.routed: dict[str, Path] = {}  # adapters the router serves: an evicted one is reloaded on demand
        self.on_batch: Callable[[int, float], None] | None = None  # (batch size, seconds)
        self._doomed: set[str] = set()  # unloads waiting for their last in-flight request
        self._thread = threading.Thread(target=self._run, name="generation-engine", daemon=True)
        self._thread.start()

    # -- public API (any thread) ---------------------------------------------------------------------------

    def submit(self, request: GenRequest) -> Future:
        # Check and count under the lock that unloading takes too: a counted adapter is never deleted under us.
        name = request.adapter
        with self._lock:
            if name != BASE_ADAPTER and (name not in self.resident or name in self._doomed):
                if name not in self.routed:
                    raise AdapterGone(f"adapter {name!r} is not loaded", "route the request again")
                self._queue.put(_Command("load", name, self.routed[name]))  # evicted earlier (LRU): reload first
            self.in_use[name] = self.in_use.get(name, 0) + 1
        self._queue.put(request)
        return request.future

    def load_adapter(self, name: str, path: Path) -> Future:
        """Validate and load (between batches) an adapter the router is about to serve. The future fails with
        AdapterRefused if the adapter is unusable, or another SpecialistError if it could not be loaded now."""
        with self._lock:
            self.routed[name] = Path(path)
        cmd = _Command("load", name, Path(path))
        self._queue.put(cmd)
        return cmd.future

    def unload_adapter(self, name: str) -> Future:
        """The router no longer serves `name`: unload it once its queued requests have finished."""
        with self._lock:
            self.routed.pop(name, None)
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

    def _step(self) -> None:
        """One scheduling round: a command, or a batch gathered for up to max_wait and generated."""
        item = self._next_item(block=not self._pending)
        if item is None and not self._pending:
            return
        if isinstance(item, _Command):
            self._execute(item)
            return
        if item is not None:
            self._pending.append(item)
        # Give concurrent requests a moment to join the batch; an idle server pays at most max_wait once.
        deadline = time.perf_counter() + self.max_wait
        while len(self._pending) < self.max_batch_size:
            extra = self._next_item(block=True, timeout=max(0.0, deadline - time.perf_counter()))
            if extra is None:
                break
            if isinstance(extra, _Command):
                self._execute(extra)
            else:
                self._pending.append(extra)
        batch = self._take_batch()
        if batch:
            self._generate(batch)

    def _next_item(self, block: bool, timeout: float | None = None):
        try:
            return self._queue.get(block=block, timeout=timeout) if block else self._queue.get_nowait()
        except queue.Empty:
            return None

    def _take_batch(self) -> list[GenRequest]:
        """The oldest request plus every pending one with the same sampling settings, up to the batch size."""
        if not self._pending:
            return []
        key = self._pending[0].sampling
        batch = [r for r in self._pending if r.sampling == key and (key.seed is None or r is self._pending[0])]
        batch = batch[: self.max_batch_size]
        self._pending = [r for r in self._pending if r not in batch]
        return batch

    def _execute(self, cmd: _Command) -> None:
        try:
            if cmd.action == "load":
                self._load(cmd.name, cmd.path)
            elif cmd.action == "unload":
                self._unload(cmd.name)
            cmd.future.set_result(None)
        except Exception as e:  # noqa: BLE001 - handed to the caller through the future
            cmd.future.set_exception(e)

    def _load(self, name: str, path: Path) -> None:
        from peft import PeftModel

        from specialist.adapters import read_manifest

        with self._lock:
            if name in self.resident:
                self.resident.move_to_end(name)
                self._doomed.discard(name)
                return
        problems = lora_only_problems(path)
        if problems:
            raise AdapterRefused(f"adapter {path} is refused: {'; '.join(problems)}", "it stays unloaded; the previous route keeps serving")
        manifest = read_manifest(path)
        if manifest.base_model.content_sha256 != self.base_sha256:
            raise AdapterRefused(f"adapter {path} was trained for base model {manifest.base_model.id}", "serve it with that base model")
        while len(self.resident) >= self.max_resident:  # evict the least recently used adapter nobody is using
            with self._lock:
                victim = next((n for n in self.resident if not self.in_use.get(n) and n not in self._doomed), None)
            if victim is None:
                raise SpecialistError(f"all {self.max_resident} adapter slots are in use", "retry, or raise max_resident_adapters")
            self._unload(victim)  # a routed victim is reloaded on its next request
        try:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(path, adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name).eval()
            # Keep peft's default adapter valid (requests always name theirs via adapter_names).
            self.model.set_adapter(name)
        except Exception as e:  # corrupt weights, wrong shapes: refuse with the reason, keep serving the rest
            if isinstance(self.model, PeftModel) and name in self.model.peft_config:
                self.model.delete_adapter(name)  # drop a half-added adapter
            raise AdapterRefused(f"adapter {path} could not be loaded: {str(e).splitlines()[0][:200]}", "fix or re-train it") from None
        with self._lock:
            self.resident[name] = Path(path)

    def _unload(self, name: str) -> None:
        """Unload now, or as soon as the requests already queued for it have finished."""
        with self._lock:
            if name not in self.resident:
                return
            if self.in_use.get(name):
                self._doomed.add(name)
                return
            self._doomed.discard(name)
            del self.resident[name]
        self.model.delete_adapter(name)

    def _release(self, requests: list[GenRequest]) -> None:
        """Requests are done with their adapters: finish the unloads that were waiting for them."""
        with self._lock:
            for r in requests:
                self.in_use[r.adapter] -= 1
            ready = [n for n in self._doomed if not self.in_use.get(n)]
        for name in ready:
            self._unload(name)

    @torch.no_grad()
    def _generate(self, batch: list[GenRequest]) -> None:
        started = time.perf_counter()
        missing = [r for r in batch if r.adapter != BASE_ADAPTER and r.adapter not in self.resident]
        for r in missing:  # its reload failed: tell that client, run the rest
            r.future.set_exception(AdapterGone(f"adapter {r.adapter!r} is not loaded", "route the request again"))
        self._release(missing)
        batch = [r for r in batch if r not in missing]
        if not batch:
            return
        try:
            tracker = _RowTracker(self, batch)
            padded = self.tokenizer.pad({"input_ids": [r.prompt_ids for r in batch]}, return_tensors="pt").to(self.device)
            sampling = batch[0].sampling
            kwargs = {}
            if sampling.temperature > 0:
                kwargs = {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p}
                if sampling.seed is not None:
                    torch.manual_seed(sampling.seed)
            else:
                kwargs = {"do_sample": False}
            if hasattr(self.model, "peft_config"):
                kwargs["adapter_names"] = [r.adapter for r in batch]
            for r in batch:
                if r.adapter in self.resident:
                    self.resident.move_to_end(r.adapter)
            self.model.generate(
                input_ids=padded["input_ids"],
                attention_mask=padded["attention_mask"],
                max_new_tokens=max(r.max_new_tokens for r in batch),
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.eos_ids,
                streamer=tracker,
                stopping_criteria=StoppingCriteriaList([_RowsDone(tracker)]),
                **kwargs,
            )
            tracker.flush()
            for row, r in enumerate(batch):
                r.future.set_result(
                    Generation(tracker.text[row], len(r.prompt_ids), len(tracker.ids[row]), tracker.reason[row], tracker.ids[row])
                )
        except Exception as e:  # noqa: BLE001 - every waiting client gets the error instead of hanging
            for r in batch:
                if not r.future.done():
                    r.future.set_exception(e)
        finally:
            self._release(batch)
            self.batch_sizes.append(len(batch))
            if self.on_batch is not None:
                self.on_batch(len(batch), time.perf_counter() - started)
