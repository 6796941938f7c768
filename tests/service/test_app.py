"""The composition root (service/app.py): ServiceState wires the job worker to the serving backend, so serving
gives up cores while a training job runs and takes them back when it ends.

The engine's own behaviour (batching, eviction, cancellation) is tested in test_engine.py, the core-sharing
policy alone in test_backends.py."""

import pytest


def test_serving_gives_up_cores_while_a_job_trains(service, monkeypatch):
    engine, config = service.state.backend.engine, service.state.config
    idle = engine.threads_wanted()
    if idle == 1:
        pytest.skip("one torch thread: there is no core to give up")
    running = type("Job", (), {"poll": lambda self: 0})()  # a job process is running
    monkeypatch.setattr(service.state.worker, "current", running)
    busy = engine.threads_wanted()
    assert busy == max(1, idle - config.job_threads) and busy < idle
    assert service.post("/predict", json={"task": "sentiment", "input": "fine"}).status_code == 200
    assert engine.threads == busy
    monkeypatch.setattr(service.state.worker, "current", None)
    assert service.post("/predict", json={"task": "sentiment", "input": "fine"}).status_code == 200
    assert engine.threads == idle
