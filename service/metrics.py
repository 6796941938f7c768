"""Prometheus metrics, exported on BentoML's /metrics: requests, errors, latency, generated tokens, batch sizes,
and each generation engine's health and adapter count (engine backends).

Created once per process (Prometheus refuses a second registration of the same name).
"""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def _instruments():
    import bentoml

    return {
        "requests": bentoml.metrics.Counter(
            name="specialist_requests_total", documentation="generation requests", labelnames=["task", "endpoint"]
        ),
        "errors": bentoml.metrics.Counter(
            name="specialist_errors_total", documentation="requests answered with an error", labelnames=["status"]
        ),
        "latency": bentoml.metrics.Histogram(
            name="specialist_request_seconds",
            documentation="generation latency",
            labelnames=["task", "endpoint"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
        ),
        "tokens": bentoml.metrics.Counter(
            name="specialist_generated_tokens_total", documentation="generated tokens", labelnames=["task"]
        ),
        "engine_up": bentoml.metrics.Gauge(
            name="specialist_engine_up", documentation="1 while a generation engine answers", labelnames=["engine"]
        ),
        "engine_adapters": bentoml.metrics.Gauge(
            name="specialist_engine_adapters",
            documentation="routed adapters a generation engine holds",
            labelnames=["engine"],
        ),
        "batch_size": bentoml.metrics.Histogram(
            name="specialist_batch_size",
            documentation="requests decoded together per forward step",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        ),
    }


class Metrics:
    def __init__(self):
        instruments = _instruments()
        self.requests = instruments["requests"]
        self.errors = instruments["errors"]
        self.latency = instruments["latency"]
        self.tokens = instruments["tokens"]
        self.batch_size = instruments["batch_size"]
        self.engine_up = instruments["engine_up"]
        self.engine_adapters = instruments["engine_adapters"]

    def engine(self, engine: str, up: bool, adapters: int) -> None:
        self.engine_up.labels(engine).set(1 if up else 0)
        self.engine_adapters.labels(engine).set(adapters)

    def observe(self, task: str, endpoint: str, seconds: float, tokens: int) -> None:
        self.requests.labels(task, endpoint).inc()
        self.latency.labels(task, endpoint).observe(seconds)
        self.tokens.labels(task).inc(tokens)
