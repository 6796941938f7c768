import json
import shutil
import threading

import pytest

from cli.main import main
from specialist.adapters import Registry
from specialist.errors import SpecialistError


def _gated(src, dest, passed=True):
    """A copy of a tiny adapter with a gate decision bound to its weights."""
    from eval.gate import GatePolicy, make_decision
    from specialist.adapters import read_manifest
    from specialist.adapters.decision import Check, save_decision
    from specialist.base_models import resolve_base_model

    shutil.copytree(src, dest)
    base = resolve_base_model(read_manifest(dest).base_model.id)
    decision = make_decision(
        dest, [Check(name="beats base model", passed=passed, value=1.0)], base, GatePolicy(), {"candidate": {}}
    )
    save_decision(dest, decision)
    return dest


@pytest.fixture
def registry(tmp_path, database_url):
    """On SQLite and on PostgreSQL: every registry test runs on both."""
    return Registry(tmp_path / "home")


def test_add_promote_rollback_remove_and_restart(registry, tiny_adapters, tmp_path):
    a = _gated(tiny_adapters["alpha"], tmp_path / "a")
    b = _gated(tiny_adapters["beta"], tmp_path / "b")
    assert registry.add(a, "sentiment").version == 1
    assert registry.add(b, "sentiment").version == 2
    assert registry.routes()["sentiment"].version == 2
    assert registry.rollback("sentiment").version == 1
    with pytest.raises(SpecialistError, match="no earlier champion"):
        registry.rollback("sentiment")
    registry.promote("sentiment", 2)
    # A restart (a new Registry over the same home) reads back exactly the same routes and history.
    again = Registry(registry.root.parent)
    assert {t: v.version for t, v in again.routes().items()} == {"sentiment": 2}
    assert [h["action"] for h in again.history("sentiment")] == [
        "add",
        "promote",
        "add",
        "promote",
        "rollback",
        "promote",
    ]
    # The registered copy is immutable and complete, independent of the source folder.
    shutil.rmtree(a)
    assert (again.version("sentiment", 1).path / "adapter_model.safetensors").is_file()
    again.remove("sentiment")
    assert again.routes() == {}


def test_only_passing_gate_decisions_for_these_weights_are_routed(registry, tiny_adapters, tmp_path):
    with pytest.raises(SpecialistError, match="has no gate decision"):
        registry.add(tiny_adapters["alpha"], "t")
    failed = _gated(tiny_adapters["alpha"], tmp_path / "failed", passed=False)
    with pytest.raises(SpecialistError, match="failed its gate"):
        registry.add(failed, "t")
    tampered = _gated(tiny_adapters["alpha"], tmp_path / "tampered")
    shutil.copy(tiny_adapters["beta"] / "adapter_model.safetensors", tampered / "adapter_model.safetensors")
    with pytest.raises(SpecialistError, match="for other weights"):
        registry.add(tampered, "t")
    v = registry.add(failed, "t", skip_gate=True)  # operators may override, and it is recorded
    assert v.skip_gate and "skip-gate" in registry.history("t")[0]["reason"]
    assert registry.versions("t")[0].gate_passed is False


def test_unsafe_task_names_and_non_lora_adapters_are_refused(registry, tiny_adapters, tmp_path):
    a = _gated(tiny_adapters["alpha"], tmp_path / "a")
    for name in ("../evil", "a/b", "", ".hidden", "x" * 200, "nul\x00"):
        with pytest.raises(SpecialistError, match="invalid task name"):
            registry.add(a, name)
    (a / "adapter_model.safetensors").unlink()
    (a / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(SpecialistError, match="pickle .bin weights are refused"):
        registry.add(a, "t", skip_gate=True)


def test_concurrent_promotions_serialise(registry, tiny_adapters, tmp_path):
    for name in ("alpha", "beta"):
        registry.add(_gated(tiny_adapters[name], tmp_path / name), "t")
    errors = []

    def flip(version):
        try:
            for _ in range(20):
                Registry(registry.root.parent).promote("t", version)
        except Exception as e:  # noqa: BLE001 - any error is a failure of the test
            errors.append(e)

    threads = [threading.Thread(target=flip, args=(v,)) for v in (1, 2, 1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    history = registry.history("t")
    # Every logged promotion starts from the champion the previous one left: no interleaved writes.
    promotions = [h for h in history if h["action"] == "promote"]
    for before, after in zip(promotions, promotions[1:]):
        assert after["from_version"] == before["to_version"]
    assert registry.routes()["t"].version == promotions[-1]["to_version"]


def test_registry_cli(tiny_adapters, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPECIALIST_HOME", str(tmp_path / "home"))
    a = _gated(tiny_adapters["alpha"], tmp_path / "a")
    assert main(["registry", "add", str(a), "--task", "sentiment"]) == 0
    assert main(["registry", "add", str(a), "--task", "sentiment"]) == 0
    assert main(["registry", "list", "--history"]) == 0
    out = capsys.readouterr().out
    assert "* sentiment\tv2" in out and "promote" in out
    assert main(["registry", "rollback", "sentiment"]) == 0
    assert main(["registry", "promote", "sentiment", "7"]) == 1
    assert "has no version 7" in capsys.readouterr().err
    assert main(["registry", "remove", "sentiment"]) == 0
    assert main(["registry", "add", str(a), "--task", "../x"]) == 1
    assert json.loads((a / "gate_decision.json").read_text())["passed"]


def test_registered_versions_keep_the_candidates_gate_scores(registry, tiny_adapters, tmp_path):
    from eval.gate import GatePolicy, make_decision
    from specialist.adapters import read_manifest
    from specialist.adapters.decision import CANDIDATE, save_decision
    from specialist.base_models import resolve_base_model

    a = tmp_path / "a"
    shutil.copytree(tiny_adapters["alpha"], a)
    base = resolve_base_model(read_manifest(a).base_model.id)
    scores = {"base": {"t": {"score": 1.0}}, CANDIDATE: {"t": {"score": 42.0}}}  # the gate names the model it gates
    save_decision(a, make_decision(a, [], base, GatePolicy(), scores))
    assert registry.add(a, "t").scores == {"t": {"score": 42.0}}
