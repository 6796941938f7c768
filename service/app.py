"""The composition root: a `ServiceState` assembled from a ServeConfig, and the FastAPI app over it.

The app is one router per API dialect (service/api/), the shared plumbing of service/http.py and the request
path of service/state.py. It is mounted into the BentoML service (service/bento.py), which adds /livez,
/readyz and /metrics.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.dependencies.utils import get_flat_params
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from service.api import ROUTERS
from service.api.specialists import UPLOADS
from service.backends import Backend, LocalBackend, TGIBackend
from service.config import ADMIN_TOKEN_ENV, CONFIG_ENV, ServeConfig
from service.http import (
    BodyLimit,
    TokenAuth,
    admin_prefixes,
    guarded_prefixes,
    inference_routes,
    install_error_handlers,
    route_role,
)
from service.jobs import JobStore, LocalExecutor
from service.metrics import Metrics
from service.openapi import new_app, responses_for
from service.router import Router
from service.state import ServingState
from specialist.adapters import Registry
from specialist.base_models import BaseModelRef, resolve_base_model
from specialist.paths import specialist_home

log = logging.getLogger("specialist.service")
# Every path that needs a token the server must be given (admin or request role): the prefixes of their routes.
ADMIN_PATHS = admin_prefixes(route for router in ROUTERS for route in router.routes)


class ServiceState(ServingState):
    """Everything a worker holds, built from its config; plus the poller that hot-swaps routes."""

    def __init__(self, config: ServeConfig, home: Path | None = None, backend: Backend | None = None):
        registry = Registry(home)
        base = resolve_base_model(config.base_model)
        self.home = Path(home) if home is not None else None
        if backend is None:
            backend = make_backend(config, base, self.home or specialist_home())
        metrics = Metrics()
        backend.report_batches(lambda size, seconds: metrics.batch_size.observe(size))
        backend.report_engines(metrics.engine)
        router = Router(registry, backend.load, backend.unload, backend.permanent, capacity=backend.max_tasks)
        router.sync()
        jobs = JobStore(self.home or specialist_home())
        interrupted = jobs.resume_interrupted(config.job_retries)
        if interrupted:
            log.warning("%d job(s) were interrupted by a restart: resuming from their checkpoints", interrupted)
        # The job process reads the same config (task data, base model, gate policy) from the environment; it
        # runs on request data and needs no admin token, so it does not get one.
        job_env = {k: v for k, v in os.environ.items() if k != ADMIN_TOKEN_ENV} | {CONFIG_ENV: config.model_dump_json()}
        worker = LocalExecutor(jobs, jobs.root.parent, env=job_env, retries=config.job_retries)
        # A training job takes job_threads cores; serving keeps the rest.
        backend.share_cores(config.job_threads, lambda: worker.current is not None, config.num_threads)
        super().__init__(config, base, registry, backend, metrics, router, jobs, worker)
        self._stop, self._changed = threading.Event(), threading.Event()
        # On PostgreSQL a promotion made anywhere wakes the poller at once (LISTEN/NOTIFY); polling stays the
        # fallback, and the only way on SQLite.
        registry.db.listen(self._changed.set, self._stop)
        self._poller = threading.Thread(target=self._poll, name="route-poller", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        # This thread starts last in the worker's start: from here on the service answers (or queues) requests.
        self.backend.service_started()
        while not self._stop.is_set():
            self._changed.wait(self.config.poll_seconds)
            self._changed.clear()
            if self._stop.is_set():
                return
            try:
                self.router.sync()
            except Exception:  # noqa: BLE001 - a failed poll is retried on the next tick
                log.exception("route sync failed")

    def close(self) -> None:
        self._stop.set()
        self._changed.set()
        super().close()


def make_backend(config: ServeConfig, base: BaseModelRef, home: Path) -> Backend:
    """The backend `config.backend` names."""
    if config.backend == "local":
        return LocalBackend(
            base, config.device, config.max_batch_size, config.max_wait_ms, config.max_resident_adapters
        )
    if config.backend == "vllm":
        from service.vllm.backend import VLLMBackend  # its engine client and supervisor: only for this backend

        return VLLMBackend(base, config, home / "engines")
    return TGIBackend(config.tgi_urls, base)


def create_app(state: ServingState) -> FastAPI:
    """The app over `state`, which is only read per request (BentoML builds the app before the state exists)."""
    app = new_app()  # title, version, description, offline docs, GET /
    app.state.serving = state  # what `ServingDep` hands the routes
    for router in ROUTERS:
        _include(app, router)
    # Last, so every real route matches first. BentoML mounts this app "passively": a path none of its routes
    # matches would get BentoML's plain-text "Not Found"; this makes every unknown path and method a JSON error.
    app.add_api_route("/{path:path}", _no_such_route, methods=list(ANY_METHOD), include_in_schema=False)

    app.add_middleware(
        BodyLimit,
        limit_for=lambda path: state.config.max_upload_bytes if path == UPLOADS else state.config.max_body_bytes,
        timeout_for=lambda: state.config.body_timeout_seconds,
    )
    # Added last = runs first: no body is read before its token is checked.
    app.add_middleware(TokenAuth, prefixes=guarded_prefixes(app.routes), inference=inference_routes(app.routes))
    install_error_handlers(app, lambda status: state.metrics.errors.labels(str(status)).inc())
    return app


ANY_METHOD = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


async def _no_such_route(request: Request, path: str):
    """404 for a path no route has, 405 for a method the path's route does not take (as Starlette would)."""
    scope = {**request.scope, "method": request.method}
    others = [r for r in request.app.routes if isinstance(r, APIRoute) and r.endpoint is not _no_such_route]
    if any(r.matches(scope)[0] == Match.PARTIAL for r in others):
        raise StarletteHTTPException(405)
    raise StarletteHTTPException(404, "Not Found")


def _include(app: FastAPI, router: APIRouter) -> None:
    """Each route of `router` added to the app itself, as include_router did before FastAPI 0.16x (which nests
    the router instead): `app.routes` stays the flat list of every endpoint that the security tests audit."""
    for route in router.routes:
        assert isinstance(route, APIRoute), route  # the dialects declare endpoints only
        (method,) = route.methods  # one method per endpoint: its documented statuses are per method
        role = route_role(route)
        validates = route.body_field is not None or bool(get_flat_params(route.dependant))
        app.add_api_route(
            route.path,
            route.endpoint,
            methods=[method],
            status_code=route.status_code,
            dependencies=route.dependencies,
            name=route.name,
            summary=route.summary,
            description=route.description,
            responses=responses_for(method, route.path, role, validates) | route.responses,
        )
