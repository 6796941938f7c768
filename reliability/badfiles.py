"""Bad files, made from good ones: broken adapters, a pickle that would leave a mark if ever unpickled, and
malformed SuperNI/Alpaca data. Shared by the quick tests and the live fault matrix.

Every adapter builder copies a good adapter directory to `dest` and breaks one thing; `ADAPTER_DEFECTS` names
them all. `at_registration` says whether the registry itself must refuse it (the others pass registration
with --skip-gate, so the service must refuse them when loading).
"""

from __future__ import annotations

import gzip
import json
import pickle
import shutil
import struct
from pathlib import Path

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
MANIFEST = "manifest.json"


class _LeavesAMark:
    """Unpickling this object writes the file named by `marker`: proof that a pickle was executed."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "unpickled!"))


def pickle_bomb(path: Path, marker: Path) -> Path:
    """A pickle file that writes `marker` when loaded (by pickle.load or torch.load(weights_only=False))."""
    path.write_bytes(pickle.dumps({"base_model.model.x.lora_A.weight": _LeavesAMark(str(marker))}))
    return path


def _copy(good: Path, dest: Path) -> Path:
    shutil.copytree(good, dest)
    return dest


def _rewrite_tensors(path: Path, edit) -> None:
    """Re-save the safetensors file after `edit(dict_of_tensors)` changed it."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def truncated_weights(good: Path, dest: Path) -> Path:
    d = _copy(good, dest)
    (d / WEIGHTS).write_bytes((d / WEIGHTS).read_bytes()[:64])
    return d


def truncated_tensor_data(good: Path, dest: Path) -> Path:
    """The header survives, the tensor bytes are cut in half."""
    d = _copy(good, dest)
    raw = (d / WEIGHTS).read_bytes()
    header = 8 + struct.unpack("<Q", raw[:8])[0]
    (d / WEIGHTS).write_bytes(raw[: header + (len(raw) - header) // 2])
    return d


def garbage_weights(good: Path, dest: Path) -> Path:
    d = _copy(good, dest)
    (d / WEIGHTS).write_bytes(b"this is not a safetensors file at all" * 100)
    return d


def empty_weights(good: Path, dest: Path) -> Path:
    d = _copy(good, dest)
    (d / WEIGHTS).write_bytes(b"")
    return d


def huge_header_length(good: Path, dest: Path) -> Path:
    """A header that claims 2^60 bytes: a reader that trusts it would try to allocate an exabyte."""
    d = _copy(good, dest)
    raw = (d / WEIGHTS).read_bytes()
    (d / WEIGHTS).write_bytes(struct.pack("<Q", 2**60) + raw[8:])
    return d


def wrong_shapes(good: Path, dest: Path) -> Path:
    """Readable LoRA tensors whose rank does not match adapter_config's r (they still fit the base's layers)."""

    def halve(tensors):
        for key in list(tensors):
            t = tensors[key]
            tensors[key] = (
                t[: t.shape[0] // 2].contiguous() if "lora_A" in key else t[:, : t.shape[1] // 2].contiguous()
            )

    d = _copy(good, dest)
    _rewrite_tensors(d / WEIGHTS, halve)
    return d


def wrong_dims(good: Path, dest: Path) -> Path:
    """LoRA tensors whose outer dimensions do not fit the base model's layers (as if made for another base)."""

    def cut(tensors):
        for key in list(tensors):
            t = tensors[key]
            tensors[key] = (
                t[:, : t.shape[1] // 2].contiguous() if "lora_A" in key else t[: t.shape[0] // 2].contiguous()
            )

    d = _copy(good, dest)
    _rewrite_tensors(d / WEIGHTS, cut)
    return d


def non_lora_tensor(good: Path, dest: Path) -> Path:
    import torch

    d = _copy(good, dest)
    _rewrite_tensors(d / WEIGHTS, lambda t: t.update({"base_model.model.model.embed_tokens.weight": torch.zeros(4, 4)}))
    return d


def no_tensors(good: Path, dest: Path) -> Path:
    from safetensors.torch import save_file

    d = _copy(good, dest)
    save_file({}, d / WEIGHTS)
    return d


def other_base_config(good: Path, dest: Path) -> Path:
    """adapter_config.json written for another architecture (GPT-2 module names, another base model)."""
    d = _copy(good, dest)
    config = json.loads((d / CONFIG).read_text())
    config.update(base_model_name_or_path="openai-community/gpt2", target_modules=["c_attn", "c_proj"])
    (d / CONFIG).write_text(json.dumps(config))
    return d


def other_base_manifest(good: Path, dest: Path) -> Path:
    """The manifest says it was trained on another base model (another content hash)."""
    d = _copy(good, dest)
    manifest = json.loads((d / MANIFEST).read_text())
    manifest["base_model"] = {"id": "some/other-model", "content_sha256": "0" * 64}
    (d / MANIFEST).write_text(json.dumps(manifest))
    return d


def config_not_json(good: Path, dest: Path) -> Path:
    d = _copy(good, dest)
    (d / CONFIG).write_text("{ this is not json")
    return d


def modules_to_save(good: Path, dest: Path) -> Path:
    d = _copy(good, dest)
    config = json.loads((d / CONFIG).read_text())
    config["modules_to_save"] = ["lm_head"]
    (d / CONFIG).write_text(json.dumps(config))
    return d


def manifest_unknown_keys(good: Path, dest: Path) -> Path:
    d = _copy(good, dest)
    manifest = json.loads((d / MANIFEST).read_text())
    manifest["surprise"] = True
    (d / MANIFEST).write_text(json.dumps(manifest))
    return d


def no_manifest(good: Path, dest: Path) -> Path:
    d = _copy(good, dest)
    (d / MANIFEST).unlink()
    return d


def pickle_only(good: Path, dest: Path, marker: Path) -> Path:
    """The weights as a pickle `.bin` only (no safetensors): the pickle leaves `marker` if loaded."""
    d = _copy(good, dest)
    (d / WEIGHTS).unlink()
    pickle_bomb(d / "adapter_model.bin", marker)
    return d


def pickle_beside_safetensors(good: Path, dest: Path, marker: Path) -> Path:
    """Good safetensors plus a booby-trapped `.bin` beside them: the `.bin` must never be opened."""
    d = _copy(good, dest)
    pickle_bomb(d / "adapter_model.bin", marker)
    return d


# name -> (builder, the registry refuses it at registration); builders taking a marker are the pickle ones.
ADAPTER_DEFECTS = {
    "truncated-weights": (truncated_weights, True),
    "truncated-tensor-data": (truncated_tensor_data, True),
    "garbage-weights": (garbage_weights, True),
    "empty-weights": (empty_weights, True),
    "huge-header-length": (huge_header_length, True),
    "non-lora-tensor": (non_lora_tensor, True),
    "no-tensors": (no_tensors, True),
    "config-not-json": (config_not_json, True),
    "modules-to-save": (modules_to_save, True),
    "manifest-unknown-keys": (manifest_unknown_keys, True),
    "no-manifest": (no_manifest, True),
    "wrong-dims": (wrong_dims, False),
    "wrong-shapes": (wrong_shapes, False),
    "other-base-config": (other_base_config, False),
    "other-base-manifest": (other_base_manifest, False),
}


# -- data files ------------------------------------------------------------------------------------------------


def _task(definition="Copy the input.", instances=None) -> dict:
    rows = (
        instances
        if instances is not None
        else [{"id": f"i{n}", "input": f"x{n}", "output": [f"x{n}"]} for n in range(120)]
    )
    return {
        "Definition": [definition],
        "Positive Examples": [],
        "Negative Examples": [],
        "Categories": ["Test"],
        "Instances": rows,
    }


# name -> file content (bytes); each is a SuperNI task file `<name>.json` (or `.json.gz`) that must be refused.
def bad_task_files() -> dict[str, bytes]:
    good = json.dumps(_task()).encode()
    return {
        "task990_truncated.json": good[: len(good) // 2],
        "task991_not_json.json": b"Definition: copy the input",
        "task992_empty.json": b"",
        "task993_array.json": b"[1, 2, 3]",
        "task994_no_instances.json": json.dumps({"Definition": ["x"]}).encode(),
        "task995_definition_number.json": json.dumps(_task(definition=5)).encode(),
        "task996_instances_not_list.json": json.dumps(_task() | {"Instances": "many"}).encode(),
        "task997_instance_no_output.json": json.dumps(_task(instances=[{"id": "a", "input": "x"}] * 120)).encode(),
        "task998_corrupt_gzip.json.gz": gzip.compress(good)[:40],
        "task999_invalid_utf8.json": b'{"Definition": ["\xff\xfe"], "Instances": []}',
        "task989_deep_nesting.json": b"[" * 100_000 + b"]" * 100_000,
        "task988_huge_integer.json": b'{"Definition": ["x"], "Instances": [], "Count": ' + b"9" * 5000 + b"}",
    }


# name -> content of an Alpaca-style generalist file that must be refused.
def bad_generalist_files() -> dict[str, bytes]:
    record = {"instruction": "Say hi.", "input": "", "output": "hi"}
    return {
        "truncated.jsonl": (json.dumps(record) + "\n" + json.dumps(record)[:20]).encode(),
        "not-array.json": json.dumps({"records": [record]}).encode(),
        "missing-output.jsonl": json.dumps({"instruction": "x"}).encode(),
        "output-number.jsonl": json.dumps(record | {"output": 5}).encode(),
        "record-is-list.jsonl": b"[1, 2]\n",
        "empty.jsonl": b"",
        "invalid-utf8.jsonl": b'{"instruction": "\xff", "output": "x"}\n',
        "corrupt.jsonl.gz": gzip.compress(json.dumps(record).encode())[:30],
        "deep-nesting.jsonl": b"[" * 100_000 + b"\n",
        "huge-integer.json": b"[" + b"1" * 5000 + b"]",
    }
