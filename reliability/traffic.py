"""Closed-loop clients against 127.0.0.1, and the fingerprints that tell a right answer from a wrong adapter's.

Fingerprints: every routed adapter gets random LoRA weights of its own, so under greedy decoding each one
answers a given prompt in its own way. Before any load, the harness records, for each (task, input):

- the task's own answer (through /predict, once per version the tests will route), and
- every *other* routed adapter's answer to that same rendered prompt (through /generate, which passes a
  rendered prompt through unchanged, with adapter_id = the other task).

An answer under load is then `ok` (the claimed version's own answer), `wrong-adapter` (another adapter's
answer to this prompt: the one failure that must never happen), or `drift` (neither: a numerical difference
from batching; counted and reported, not a routing error).
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from reliability.results.base import TrafficSummary
from service.client import error_message

TRANSPORT_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def predict(session, url: str, task: str, text: str, max_new: int, timeout: float = 300) -> requests.Response:
    return session.post(
        f"{url}/predict", json={"task": task, "input": text, "parameters": {"max_new_tokens": max_new}}, timeout=timeout
    )


@dataclass
class Fingerprints:
    # (task, input) -> {"task@version" or "other-task@version": answer to this task's prompt}
    answers: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    def add(self, task: str, text: str, adapter: str, answer: str) -> None:
        self.answers.setdefault((task, text), {})[adapter] = answer.strip()

    def judge(self, task: str, version: int, text: str, answer: str) -> str:
        known = self.answers.get((task, text))
        if not known or f"{task}@{version}" not in known:
            return "unknown"
        answer = answer.strip()
        if answer == known[f"{task}@{version}"]:
            return "ok"
        if any(answer == a for key, a in known.items() if key != f"{task}@{version}"):
            return "wrong-adapter"
        return "drift"

    def distinguishable(self) -> tuple[int, int]:
        """(prompts where every adapter answers differently, prompts): how well wrong answers can be told apart."""
        distinct = sum(len(set(a.values())) == len(a) for a in self.answers.values())
        return distinct, len(self.answers)


def fingerprint(
    url: str,
    admin: dict,
    tasks: dict[str, list[str]],
    prompts: dict,
    versions: dict[str, int],
    max_new: int,
    fp: Fingerprints | None = None,
    only: tuple[str, ...] | None = None,
    workers: int = 16,
) -> Fingerprints:
    """Record the answers of the currently routed versions (`versions`: task -> routed version), of all
    adapters or `only` those of some tasks.

    `prompts[task]` is the TaskPrompt the server renders for `task`; `tasks[task]` its fingerprint inputs."""
    fp = fp or Fingerprints()
    wanted = set(only or tasks)
    jobs = []
    for task, inputs in tasks.items():
        for text in inputs:
            if task in wanted:
                jobs.append(("own", task, text, task))
            for other in wanted:
                if other != task:
                    jobs.append(("cross", task, text, other))

    def run(job):
        kind, task, text, adapter = job
        with requests.Session() as s:
            if kind == "own":
                r = predict(s, url, task, text, max_new)
                r.raise_for_status()
                return job, r.json()["output"], r.json()["adapter_version"]
            body = {
                "inputs": prompts[task].render(text),
                "parameters": {"adapter_id": adapter, "max_new_tokens": max_new},
            }
            r = s.post(f"{url}/generate", json=body, timeout=300)
            r.raise_for_status()
            return job, r.json()["generated_text"], versions[adapter]

    with ThreadPoolExecutor(workers) as pool:
        for (kind, task, text, adapter), answer, version in pool.map(run, jobs):
            assert kind != "own" or version == versions[task], f"{task} served v{version}, expected v{versions[task]}"
            fp.add(task, text, f"{adapter}@{version}", answer)
    return fp


@dataclass
class Outcome:
    started: float
    seconds: float
    kind: str
    status: int | None  # None: no HTTP answer (transport error)
    error: str | None = None  # transport error type, or an HTTP error's message
    verdict: str | None = None  # fingerprint verdict for judged answers
    tokens: int = 0


class Traffic:
    """`clients` closed-loop clients, each sending `make_request(rng)` until stopped or `seconds` elapse.

    `make_request` returns (kind, method, path, json_body, expected_statuses, judge) where judge is None or
    (task, input) for a /predict answer to check against the fingerprints."""

    def __init__(
        self,
        url: str,
        make_request,
        clients: int,
        seconds: float | None = None,
        fingerprints: Fingerprints | None = None,
        timeout: float = 300,
        seed: int = 0,
    ):
        self.url, self.make_request, self.clients, self.seconds = url, make_request, clients, seconds
        self.fp, self.timeout, self.seed = fingerprints, timeout, seed
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.began = self.ended = 0.0

    def _client(self, k: int) -> None:
        rng = random.Random(self.seed * 1000 + k)
        session = requests.Session()
        deadline = self.began + self.seconds if self.seconds else None
        while not self._stop.is_set() and (deadline is None or time.time() < deadline):
            kind, method, path, body, expected, judge = self.make_request(rng)
            started = time.time()
            try:
                r = session.request(
                    method, f"{self.url}{path}", json=body, timeout=self.timeout, stream=kind.endswith("stream")
                )
                content = r.content  # a stream is read to its end
                outcome = Outcome(started, time.time() - started, kind, r.status_code)
                if r.status_code not in expected:
                    outcome.error = _message(content)
                elif judge is not None and self.fp is not None:
                    data = json.loads(content)
                    outcome.verdict = self.fp.judge(judge[0], data["adapter_version"], judge[1], data["output"])
                    outcome.tokens = data["usage"]["completion_tokens"]
                    if data["task"] != judge[0]:
                        outcome.verdict = "wrong-adapter"
                elif kind.endswith("stream") and b'"error"' in content:
                    outcome.error = _message(content)  # an error reported inside a 200 stream
            except TRANSPORT_ERRORS as e:
                outcome = Outcome(started, time.time() - started, kind, None, type(e).__name__)
                session = requests.Session()  # a broken connection is not reused
                self._stop.wait(0.2)  # a down server is not hammered
            with self._lock:
                self.outcomes.append(outcome)

    def start(self) -> "Traffic":
        self.began = time.time()
        self._threads = [threading.Thread(target=self._client, args=(k,), daemon=True) for k in range(self.clients)]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> "Traffic":
        self._stop.set()
        return self.join()

    def join(self) -> "Traffic":
        for t in self._threads:
            t.join()
        self.ended = time.time()
        return self

    def summary(self) -> TrafficSummary:
        """Counts, latency percentiles and throughput."""
        outs = self.outcomes
        ok = [o for o in outs if o.status is not None and o.error is None]
        lat = sorted(o.seconds for o in ok)
        wall = max(1e-9, (self.ended or time.time()) - self.began)
        verdicts = Counter(o.verdict for o in outs if o.verdict)
        http_errors = Counter(str(o.status) for o in outs if o.status is not None and o.error is not None)
        return TrafficSummary(
            requests=len(outs),
            ok=len(ok),
            http_errors=sum(http_errors.values()),
            http_errors_by_status=dict(http_errors),
            http_error_examples=sorted(
                {f"{o.status} {o.kind}: {o.error}"[:200] for o in outs if o.status is not None and o.error}
            )[:5],
            transport_errors=sum(o.status is None for o in outs),
            transport_errors_by_type=dict(Counter(o.error for o in outs if o.status is None)),
            wrong_adapter=verdicts.get("wrong-adapter", 0),
            drift=verdicts.get("drift", 0),
            judged=sum(verdicts.values()),
            p50_s=round(_pct(lat, 0.50), 3) if lat else None,
            p90_s=round(_pct(lat, 0.90), 3) if lat else None,
            p99_s=round(_pct(lat, 0.99), 3) if lat else None,
            max_s=round(lat[-1], 3) if lat else None,
            mean_s=round(statistics.fmean(lat), 3) if lat else None,
            requests_per_s=round(len(ok) / wall, 3),
            tokens_per_s=round(sum(o.tokens for o in ok) / wall, 2),
            wall_s=round(wall, 1),
        )


def _pct(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    return sorted_values[min(len(sorted_values) - 1, max(0, int(round(q * len(sorted_values) + 0.5)) - 1))]


def _message(content: bytes) -> str:
    text = content.decode("utf-8", "replace")
    try:
        message = error_message(json.loads(text))
        if message is None:
            raise ValueError("no error message")
        return message
    except ValueError:
        for line in text.splitlines():  # an SSE stream with an in-band error
            if line.startswith("data:") and '"error"' in line:
                try:
                    return error_message(json.loads(line[5:])) or ""
                except (ValueError, KeyError, TypeError):
                    pass
        return text[:200]
