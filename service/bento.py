"""The BentoML service: one worker holding the router and backend; the FastAPI app carries every endpoint.

    specialist serve --port 3000        # wraps: bentoml serve service.bento:SpecialistService

BentoML adds /livez, /readyz (from `__is_ready__`: base model and every routed adapter loaded) and /metrics
(Prometheus, with this service's own request, latency, token and batch-size metrics). Configuration comes
from $SPECIALIST_SERVE_CONFIG (JSON of ServeConfig, set by `specialist serve`) and $SPECIALIST_HOME.
"""

from __future__ import annotations

import bentoml

from service.app import ServiceState, create_app
from service.config import load_config


class _StateProxy:
    """The app is built at import (BentoML mounts it on the class); the state exists once the worker starts."""

    state: ServiceState | None = None

    def __getattr__(self, name):
        if _StateProxy.state is None:
            raise RuntimeError("the service is still starting")
        return getattr(_StateProxy.state, name)


app = create_app(_StateProxy())


@bentoml.asgi_app(app, path="/")
@bentoml.service(name="specialist", workers=1, traffic={"timeout": 600, "concurrency": 512})
class SpecialistService:
    def __init__(self) -> None:
        config = load_config()
        if config.num_threads:
            import torch

            torch.set_num_threads(config.num_threads)
        _StateProxy.state = ServiceState(config)

    def __is_ready__(self) -> bool:
        return _StateProxy.state is not None and _StateProxy.state.ready()

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        if _StateProxy.state is not None:
            _StateProxy.state.close()
