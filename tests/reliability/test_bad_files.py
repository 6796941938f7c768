"""Bad files: broken adapters, pickle weights, malformed SuperNI/Alpaca data, configs with unknown keys.

Each is refused with a one-line reason naming the problem; none crashes anything, none is half-loaded, and
a pickle is never unpickled.
"""

import pickle

import pytest

from reliability import badfiles
from tests.reliability.conftest import ADMIN, TASK, make_home, make_state, record

AT_REGISTRATION = [name for name, (_, refused) in badfiles.ADAPTER_DEFECTS.items() if refused]
AT_LOAD = [name for name, (_, refused) in badfiles.ADAPTER_DEFECTS.items() if not refused]


@pytest.mark.parametrize("defect", AT_REGISTRATION)
def test_the_registry_and_the_gate_refuse_broken_adapters(defect, tiny_adapters, tmp_path):
    from eval.gate import structural_checks
    from specialist.adapters import Registry, read_manifest
    from specialist.base_models import resolve_base_model
    from specialist.errors import SpecialistError

    build, _ = badfiles.ADAPTER_DEFECTS[defect]
    bad = build(tiny_adapters["alpha"], tmp_path / defect)
    registry = Registry(tmp_path / "home")
    with pytest.raises(SpecialistError) as refused:
        registry.add(bad, "t", skip_gate=True)  # even an operator's --skip-gate cannot register it
    message = str(refused.value)
    assert "\n" not in message and ("refused" in message or "manifest" in message), message
    assert registry.versions() == [] and not (registry.root / "adapters" / "t").exists()  # nothing half-copied
    base = resolve_base_model(read_manifest(tiny_adapters["alpha"]).base_model.id)
    assert not all(c.passed for c in structural_checks(bad, base))
    record("bad-file", f"adapter/registration/{defect}", None)


@pytest.fixture
def fresh_service(tmp_path, tiny_model_dir, tiny_adapters, admin_env):
    """A service of its own (these tests change routes)."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    state = make_state(make_home(tmp_path, tiny_adapters), tiny_model_dir)
    with TestClient(create_app(state), raise_server_exceptions=False) as client:
        client.state = state
        yield client
    state.close()


def _predict(client, task=TASK, text="the acting was awful"):
    r = client.post("/predict", json={"task": task, "input": text, "parameters": {"max_new_tokens": 4}})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize(
    "defect",
    AT_LOAD,
)
def test_adapters_that_pass_registration_are_refused_at_load_and_the_champion_keeps_serving(
    fresh_service, tiny_adapters, tmp_path, defect
):
    """The fault an operator can cause with --skip-gate: the bad version is refused with its reason, the
    previous champion keeps answering exactly as before, and the service stays ready."""
    registry = fresh_service.state.registry
    before = _predict(fresh_service)
    build, _ = badfiles.ADAPTER_DEFECTS[defect]
    registry.add(build(tiny_adapters["beta"], tmp_path / defect), TASK, skip_gate=True)  # an operator's override
    assert fresh_service.post("/admin/reload", headers=ADMIN).status_code == 200
    refused = fresh_service.get("/tasks").json()["refused"]
    after = _predict(fresh_service)
    record("bad-file", f"adapter/load/{defect}", None)
    assert refused.get(TASK, "").startswith("v2: adapter"), refused
    assert (after["adapter_version"], after["output"]) == (1, before["output"])
    assert fresh_service.state.ready()  # a refused adapter does not make the service unready


def test_pickle_adapters_are_refused_and_never_unpickled(fresh_service, tiny_adapters, tmp_path):
    from eval.gate import structural_checks
    from service.engine import AdapterRefused
    from specialist.errors import SpecialistError

    marker = tmp_path / "UNPICKLED"
    # The trap works: loading the pickle really would leave the marker (so the checks below can fail).
    trap = badfiles.pickle_bomb(tmp_path / "trap.bin", marker)
    pickle.loads(trap.read_bytes())
    assert marker.exists()
    marker.unlink()

    only_bin = badfiles.pickle_only(tiny_adapters["alpha"], tmp_path / "only-bin", marker)
    with pytest.raises(SpecialistError, match="pickle .bin weights are refused"):
        fresh_service.state.registry.add(only_bin, TASK, skip_gate=True)
    with pytest.raises(AdapterRefused, match="pickle"):
        fresh_service.state.backend.load("direct", only_bin)  # even handed to the engine directly
    assert not all(c.passed for c in structural_checks(only_bin, fresh_service.state.base))

    beside = badfiles.pickle_beside_safetensors(tiny_adapters["beta"], tmp_path / "beside", marker)
    version = fresh_service.state.registry.add(beside, TASK, skip_gate=True)
    assert not list(version.path.glob("*.bin"))  # the registry copies safetensors only
    fresh_service.post("/admin/reload", headers=ADMIN)
    assert _predict(fresh_service)["adapter_version"] == 2
    fresh_service.state.backend.load("beside-direct", beside)  # loads the safetensors, ignores the .bin
    assert not marker.exists(), "a pickle was unpickled"
    record("bad-file", "adapter/pickle-only", None)
    record("bad-file", "adapter/pickle-beside-safetensors", None)


@pytest.mark.parametrize("filename", sorted(badfiles.bad_task_files()))
def test_malformed_superni_files_are_refused_by_the_api(rel_service, tmp_path, filename):
    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    (task_dir / filename).write_bytes(badfiles.bad_task_files()[filename])
    state = rel_service.state
    config = state.config
    state.config = config.model_copy(update={"task_data": task_dir})
    try:
        name = filename.removesuffix(".gz").removesuffix(".json")
        r = rel_service.post("/specialists", json={"task": "fresh", "superni_task": name}, headers=ADMIN)
    finally:
        state.config = config
    record("bad-file", f"superni/{filename}", r.status_code, None if r.status_code < 500 else r.text)
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert name in message and "\n" not in message, message
    assert not [j for j in rel_service.get("/specialists", headers=ADMIN).json()["jobs"] if j["task"] == "fresh"]


@pytest.mark.parametrize(
    "filename",
    sorted(badfiles.bad_generalist_files()),
)
def test_malformed_generalist_files_are_refused_with_a_reason(tmp_path, filename):
    from specialist.errors import SpecialistError
    from specialist.generalist import load_generalist

    path = tmp_path / filename
    path.write_bytes(badfiles.bad_generalist_files()[filename])
    with pytest.raises(SpecialistError) as refused:
        load_generalist(path)
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)
    record("bad-file", f"generalist/{filename}", None)


@pytest.mark.parametrize(
    "filename",
    sorted(badfiles.bad_task_files()),
)
def test_malformed_superni_files_are_refused_by_the_loader(tmp_path, filename):
    from specialist.errors import SpecialistError
    from specialist.superni import load_task

    (tmp_path / filename).write_bytes(badfiles.bad_task_files()[filename])
    with pytest.raises(SpecialistError):
        load_task(tmp_path, filename.removesuffix(".gz").removesuffix(".json"))


def test_configs_with_unknown_keys_are_refused(tmp_path, tiny_model_dir, task_dir, capsys):
    from cli.main import main
    from eval.gate import load_policy
    from service.config import ServeConfig
    from specialist.errors import SpecialistError

    serve = tmp_path / "serve.yaml"
    serve.write_text(f"base_model: {tiny_model_dir}\nmax_batch_sise: 4\n")  # a typo
    assert main(["serve", "--config", str(serve)]) == 2  # a usage error, refused before anything starts
    assert "unknown option 'max_batch_sise'" in capsys.readouterr().err

    train = tmp_path / "train.yaml"
    train.write_text(f"task_data: {task_dir}\ntask: [x]\nepochz: 2\n")
    assert main(["train", "--config", str(train), "--out", str(tmp_path / "out")]) == 2
    assert "unknown option 'epochz'" in capsys.readouterr().err and not (tmp_path / "out").exists()

    policy = tmp_path / "gate.yaml"
    policy.write_text("min_scor: {score: 50}\n")
    with pytest.raises(SpecialistError, match="unknown option 'min_scor'"):
        load_policy(policy)

    with pytest.raises(ValueError, match="max_batch_sise"):
        ServeConfig.model_validate({"max_batch_sise": 4})
    for name in ("serve.yaml", "train.yaml", "gate.yaml", "serve-env"):
        record("bad-file", f"config/{name}", None)


def test_a_task_whose_only_adapter_is_refused_says_so_and_why(fresh_service, tiny_adapters, tmp_path):
    """Not "unknown task ... served tasks": the task exists, its adapter could not be served, and why."""
    defect = AT_LOAD[0]
    build, _ = badfiles.ADAPTER_DEFECTS[defect]
    fresh_service.state.registry.add(build(tiny_adapters["beta"], tmp_path / defect), "lonely", skip_gate=True)
    assert fresh_service.post("/admin/reload", headers=ADMIN).status_code == 200
    r = fresh_service.post("/predict", json={"task": "lonely", "input": "x"})
    message = r.json()["error"]["message"]
    assert r.status_code == 404 and "adapter was refused" in message and "v1: adapter" in message, message
