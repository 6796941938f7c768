"""A registry with two routed tiny adapters and an in-process service over it."""

import pytest

from tests.specialist.test_registry import _gated


@pytest.fixture
def served_home(tmp_path, tiny_adapters):
    from specialist.adapters import Registry

    home = tmp_path / "home"
    registry = Registry(home)
    registry.add(_gated(tiny_adapters["alpha"], tmp_path / "alpha"), "sentiment")
    registry.add(_gated(tiny_adapters["beta"], tmp_path / "beta"), "sentiment-mixed")
    return home


@pytest.fixture
def service(served_home, tiny_model_dir, monkeypatch):
    from fastapi.testclient import TestClient

    from service.app import ServiceState, create_app
    from service.config import ServeConfig

    monkeypatch.setenv("SPECIALIST_ADMIN_TOKEN", "s3cret")
    state = ServiceState(
        ServeConfig(base_model=str(tiny_model_dir), max_wait_ms=20, poll_seconds=0.2), home=served_home
    )
    with TestClient(create_app(state)) as client:
        client.state = state
        yield client
    state.close()
