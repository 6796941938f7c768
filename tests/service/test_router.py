"""The router (service/router.py) over a real registry and a fake engine that records every load and unload."""

from pathlib import Path

import pytest

from service.router import Router, UnknownTask
from specialist.adapters import Registry
from specialist.errors import SpecialistError


class FakeEngine:
    """`load`/`unload` as the router calls them: each call is recorded with the route the task had at that moment,
    so a test can tell a load that happened before the switch from one after it."""

    def __init__(self):
        self.router: Router | None = None
        self.calls: list[tuple[str, str, int | None]] = []  # (action, engine name, sentiment's served version)
        self.broken: set[Path] = set()  # adapters whose load is refused for good (SpecialistError)
        self.busy: set[Path] = set()  # adapters whose load fails for now (not a SpecialistError)

    def _serving(self) -> int | None:
        served = self.router.routes.get("sentiment") if self.router else None
        return served.version if served else None

    def load(self, name: str, path: Path) -> None:
        self.calls.append(("load", name, self._serving()))
        if path in self.broken:
            raise SpecialistError("adapter weights are corrupt", "re-train it")
        if path in self.busy:
            raise TimeoutError("the engine is busy")

    def unload(self, name: str) -> None:
        self.calls.append(("unload", name, self._serving()))


@pytest.fixture
def registry(tmp_path, tiny_adapters) -> Registry:
    registry = Registry(tmp_path / "home")
    registry.add(tiny_adapters["alpha"], "sentiment", skip_gate=True)
    registry.add(tiny_adapters["beta"], "mixed", skip_gate=True)
    return registry


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


def _router(registry: Registry, engine: FakeEngine) -> Router:
    engine.router = Router(registry, engine.load, engine.unload)
    return engine.router


def test_sync_loads_every_champion_then_serves_it(registry, engine):
    router = _router(registry, engine)
    assert not router.ready()  # nothing read from the registry yet
    with pytest.raises(UnknownTask):
        router.resolve("sentiment")
    assert router.sync() == ["mixed", "sentiment"]
    assert engine.calls == [("load", "adapter1_v1", None), ("load", "adapter2_v1", None)]
    served = router.resolve("sentiment")
    assert (served.task, served.version, served.engine_name) == ("sentiment", 1, "adapter2_v1")
    assert served.path == registry.version("sentiment", 1).path
    assert served.prompt is not None and router.errors == {} and router.ready()
    assert router.sync() == [] and len(engine.calls) == 2  # unchanged registry: nothing reloaded


def test_a_new_champion_is_loaded_before_the_switch_and_the_old_one_unloaded_after(registry, engine, tiny_adapters):
    router = _router(registry, engine)
    router.sync()
    engine.calls.clear()
    registry.add(tiny_adapters["beta"], "sentiment", skip_gate=True)  # v2, promoted
    assert router.sync() == ["sentiment"]
    # Loaded while v1 still served; v1 unloaded only once v2 serves.
    assert engine.calls == [("load", "adapter3_v2", 1), ("unload", "adapter2_v1", 2)]
    assert router.resolve("sentiment").engine_name == "adapter3_v2" and router.resolve("mixed").version == 1
    assert router.ready()


def test_a_version_that_fails_to_load_is_refused_with_its_reason_and_the_previous_keeps_serving(
    registry, engine, tiny_adapters
):
    router = _router(registry, engine)
    router.sync()
    before = router.resolve("sentiment")
    engine.calls.clear()
    bad = registry.add(tiny_adapters["beta"], "sentiment", skip_gate=True)
    engine.broken.add(bad.path)
    assert router.sync() == []
    assert engine.calls == [("load", "adapter3_v2", 1), ("unload", "adapter3_v2", 1)]  # only the refused one
    assert router.resolve("sentiment") == before
    assert router.errors == {"sentiment": "v2: adapter weights are corrupt"}
    assert router.ready()  # refused with a reason counts as dealt with
    assert router.sync() == [] and len(engine.calls) == 2  # refused for good: not retried every sync
    registry.rollback("sentiment")
    assert router.sync() == [] and router.errors == {} and len(engine.calls) == 2  # v1 already serves


def test_a_load_that_fails_for_now_is_retried_next_sync(registry, engine, tiny_adapters):
    router = _router(registry, engine)
    router.sync()
    new = registry.add(tiny_adapters["beta"], "sentiment", skip_gate=True)
    engine.busy.add(new.path)
    assert router.sync() == []
    assert router.resolve("sentiment").version == 1 and router.errors == {}
    assert not router.ready()  # the champion is neither served nor refused yet
    engine.busy.clear()
    assert router.sync() == ["sentiment"] and router.resolve("sentiment").version == 2 and router.ready()
    assert [call[:2] for call in engine.calls[-2:]] == [("load", "adapter4_v2"), ("unload", "adapter2_v1")]


def test_a_refused_champion_at_start_falls_back_to_the_previous_one(registry, engine, tiny_adapters):
    bad = registry.add(tiny_adapters["beta"], "sentiment", skip_gate=True)  # v2 is champion before any sync
    engine.broken.add(bad.path)
    router = _router(registry, engine)
    assert router.sync() == ["mixed", "sentiment"]
    assert engine.calls == [
        ("load", "adapter1_v1", None),  # mixed
        ("load", "adapter2_v2", None),  # sentiment's champion: refused...
        ("unload", "adapter2_v2", None),
        ("load", "adapter3_v1", None),  # ...so its previous champion serves
    ]
    served = router.resolve("sentiment")
    assert (served.version, served.engine_name) == (1, "adapter3_v1")
    assert router.errors["sentiment"].startswith("v2:") and router.ready()


def test_a_removed_task_is_unrouted_then_unloaded(registry, engine):
    router = _router(registry, engine)
    router.sync()
    mixed = router.resolve("mixed").engine_name
    registry.remove("mixed")
    assert router.sync() == ["mixed"]
    assert engine.calls[-1][:2] == ("unload", mixed)
    with pytest.raises(UnknownTask) as caught:
        router.resolve("mixed")
    assert caught.value.task == "mixed" and caught.value.served == ["sentiment"]
    assert "unknown task 'mixed'" in str(caught.value) and "served tasks: sentiment" in str(caught.value)
    assert router.ready()


def test_unknown_task_with_nothing_served_says_none():
    error = UnknownTask("nope", [])
    assert isinstance(error, SpecialistError) and error.fix == "served tasks: none"


def test_a_task_beyond_the_backends_capacity_is_refused_until_there_is_room(registry, engine, tiny_adapters):
    engine.router = Router(registry, engine.load, engine.unload, capacity=1)
    router = engine.router
    router.sync()
    assert sorted(router.routes) == ["mixed"]  # the first in the registry's order; the second has no room
    assert "at most 1 tasks" in router.errors["sentiment"] and router.ready()  # refused with the reason
    registry.remove("mixed")
    router.sync()
    assert sorted(router.routes) == ["sentiment"] and "sentiment" not in router.errors


def test_a_task_let_in_after_a_capacity_refusal_is_retried_when_its_load_fails_for_now(registry, engine, tiny_adapters):
    engine.router = Router(registry, engine.load, engine.unload, capacity=1)
    router = engine.router
    router.sync()
    sentiment = registry.version("sentiment", 1).path
    engine.busy.add(sentiment)  # room frees up, but the engine is busy when it is loaded
    registry.remove("mixed")
    router.sync()
    assert "sentiment" not in router.routes and not router.ready()  # not served, and not taken for refused
    engine.busy.clear()
    router.sync()
    assert sorted(router.routes) == ["sentiment"] and router.ready()
