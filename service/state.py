"""What every API dialect's routes share: the service's parts and the one path a generation request takes
(route -> render -> generate or stream, retried across an adapter swap, with metrics).

The parts are assembled by the composition root (service/app.py); routes get them through `ServingDep`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from service.backends import Backend, EngineError, GenParams
from service.config import ServeConfig
from service.engine import AdapterGone
from service.generation import Generation, Sampling, TextPiece
from service.http import MODEL_NOT_FOUND, ApiError
from service.jobs import Executor, JobStore
from service.metrics import Metrics
from service.router import Router, ServedTask, UnknownTask
from specialist.adapters import Registry
from specialist.base_models import BaseModelRef
from specialist.errors import SpecialistError
from specialist.prompt_format import fit_prompt, is_rendered

SWAP_RETRIES = 3  # a request caught between route switch and unload is re-routed, not failed
MAX_STOPS = 4  # as OpenAI
# Below this, temperature sampling is greedy decoding in all but name, and dividing logits by it overflows
# float32 into NaN probabilities (a 500 that also failed every request batched with it): decode greedily.
GREEDY_BELOW = 1e-4


class ServingState:
    """Config, base model, registry, router, backend, metrics and job store/worker, and the request path over them."""

    def __init__(
        self,
        config: ServeConfig,
        base: BaseModelRef,
        registry: Registry,
        backend: Backend,
        metrics: Metrics,
        router: Router,
        jobs: JobStore,
        worker: Executor,
    ):
        self.config, self.base, self.registry, self.backend, self.metrics = config, base, registry, backend, metrics
        self.router, self.jobs, self.worker = router, jobs, worker

    def ready(self) -> bool:
        return self.router.ready() and self.backend.ready()

    def close(self) -> None:
        self.worker.close()
        self.backend.close()

    # -- the one path every endpoint takes -------------------------------------------------------------------

    def resolve(self, task: str | None) -> ServedTask:
        if not task:
            served = ", ".join(sorted(self.router.routes)) or "none"
            raise ApiError(404, f"no task given; served tasks: {served}", code=MODEL_NOT_FOUND)
        try:
            return self.router.resolve(task)
        except UnknownTask as e:
            refused = self.router.errors.get(task)
            if refused:  # its champion exists but could not be served: say so, not "unknown"
                raise ApiError(
                    404,
                    f"task {task!r} is not served: its adapter was refused ({refused}); promote or roll back to a "
                    "version that loads",
                    code=MODEL_NOT_FOUND,
                ) from None
            raise ApiError(404, str(e), code=MODEL_NOT_FOUND) from None

    def render(self, served: ServedTask, text: str) -> str:
        """The adapter's own prompt around the task input (a router-forwarded full prompt passes through)."""
        budget = self.config.max_input_tokens
        if is_rendered(text):
            prompt = text if self.backend.count_tokens(text) <= budget else None
        else:  # fit_prompt only returns renderings within the budget
            prompt = fit_prompt(served.prompt, text, self.backend.count_tokens, budget)
        if prompt is None:
            raise ApiError(413, f"input too long: the prompt exceeds max_input_tokens={budget}; shorten the input")
        return prompt

    def prepare(self, task: str | None, text: str) -> tuple[ServedTask, str]:
        """Route and render: raises the 404/413 a request deserves before any work starts."""
        served = self.resolve(task)
        return served, self.render(served, text)

    def params(
        self,
        max_new_tokens: int | None,
        temperature: float,
        top_p: float,
        stop,
        seed: int | None,
        grammar_param: str | None = None,
        prompt_logprobs: bool = False,
        **shaping,
    ) -> GenParams:
        """The generation parameters of a request; `shaping`: Sampling's other fields (top_k, penalties,
        top_logprobs), at their defaults unless a dialect passes them."""
        cap = self.config.max_new_tokens_cap
        n = max_new_tokens or self.config.default_max_new_tokens
        if n > cap:
            raise ApiError(422, f"max_new_tokens={n} exceeds the cap of {cap}; ask for {cap} or fewer")
        stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
        if len(stops) > MAX_STOPS or any(len(s) > 64 for s in stops):
            raise ApiError(422, f"stop: at most {MAX_STOPS} stop strings of at most 64 characters")
        if temperature < GREEDY_BELOW:
            temperature = 0.0
        if temperature > 0 and seed is None:  # as TGI does: every sampled answer has a seed it can be replayed with
            seed = secrets.randbits(32)
        grammar = shaping.get("grammar")
        if grammar is not None:
            try:
                grammar.compiled()  # refused now (422), not mid-stream
            except SpecialistError as e:
                raise ApiError(422, str(e), param=grammar_param) from None
        params = GenParams(n, Sampling(temperature, top_p, seed, **shaping), stops, prompt_logprobs)
        unsupported = self.backend.unsupported(params)
        if unsupported:
            raise ApiError(
                422,
                f"{', '.join(unsupported)}: not supported by the {self.config.backend} backend; leave "
                f"{'it' if len(unsupported) == 1 else 'them'} at the default",
            )
        return params

    async def run(self, task: str, text: str, params: GenParams, endpoint: str) -> tuple[ServedTask, Generation]:
        started = time.perf_counter()
        for _ in range(SWAP_RETRIES):
            served, prompt = self.prepare(task, text)
            try:
                result = await self.backend.generate(served, prompt, params)
            except AdapterGone:
                continue  # the route switched between routing and submission: take the new champion
            except EngineError as e:
                raise ApiError(e.status, str(e), "engine_error") from None
            except SpecialistError as e:
                raise ApiError(400, str(e)) from None
            self.metrics.observe(served.task, endpoint, time.perf_counter() - started, result.completion_tokens)
            return served, result
        raise ApiError(503, f"task {task!r} is being swapped; retry", "service_unavailable")

    async def stream(
        self, task: str, text: str, params: GenParams, endpoint: str
    ) -> AsyncIterator[TextPiece | Generation]:
        """Text pieces, then the final Generation; a swap before the first piece is retried like `run`."""
        started = time.perf_counter()
        for _ in range(SWAP_RETRIES):
            served, prompt = self.prepare(task, text)
            try:
                async for item in self.backend.stream(served, prompt, params):
                    if isinstance(item, Generation):
                        self.metrics.observe(
                            served.task, endpoint, time.perf_counter() - started, item.completion_tokens
                        )
                    yield item
                return
            except AdapterGone:
                continue
            except EngineError as e:
                raise ApiError(e.status, str(e), "engine_error") from None
        raise ApiError(503, f"task {task!r} is being swapped; retry", "service_unavailable")


async def serving_state(request: Request) -> ServingState:
    """The state create_app put on the app (async: no thread hop per request)."""
    return request.app.state.serving


ServingDep = Annotated[ServingState, Depends(serving_state)]
