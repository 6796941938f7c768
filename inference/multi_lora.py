"""Many LoRA adapters on one base model, applied per row of a batch: the inference side of every adapter.

Training writes standard PEFT adapters (peft); evaluation and serving read them here. Why not peft's own
mixed-adapter batches (`adapter_names=[...]`)? Its LoRA layers loop over the unique adapters of a batch with
several small ops each, 210 layers deep on SmolLM2: measured on this 2-core CPU, a decode step at batch 8 took
63 ms bare, 107 ms with one adapter and 191 ms with eight. Here each adapted Linear adds, per run of rows that
share an adapter, one `x @ A` and one in-place `addmm_` into the base output (scale folded into B), over
weights kept pre-transposed: a step with eight adapters costs little more than one.

Rows of a batch must be grouped by adapter (`segments`); the decoder sorts them. Adapter weights are read
from safetensors only (`check_adapter` refuses anything else before a byte is loaded), and
tests/inference/test_multi_lora.py checks the logits against peft's own mixed batches.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from specialist.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS, check_adapter
from specialist.errors import SpecialistError

_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<part>A|B)(?:\.weight)?$")
_UNSUPPORTED = {
    "use_dora": "DoRA",
    "lora_bias": "LoRA bias",
    "fan_in_fan_out": "fan_in_fan_out (Conv1D) layers",
    "layer_replication": "layer replication",
    "use_qalora": "QA-LoRA",
}


class AdapterLoadError(SpecialistError):
    """This adapter cannot be applied to this base model; the reason names the file and the mismatch."""


@dataclass(frozen=True)
class Segment:
    """Rows [start, end) of the batch use adapter slot `slot` (0 = the bare base model)."""

    slot: int
    start: int
    end: int


class _BatchState:
    """What the adapted layers read during one forward pass: which rows use which adapter."""

    segments: tuple[Segment, ...] = ()


class LoRALinear(nn.Module):
    """A base Linear plus any number of LoRA deltas, each applied only to its own rows."""

    def __init__(self, base: nn.Linear, state: _BatchState):
        super().__init__()
        self.base = base
        self.state = state
        self.deltas: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # slot -> (A^T [in, r], scale * B^T [r, out])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if not self.deltas or not self.state.segments:
            return out
        rows = x.shape[0]
        if rows < self.state.segments[-1].end:  # rows must be the batch dim, e.g. not flattened tokens
            raise ValueError(f"LoRALinear got {rows} rows, the batch has {self.state.segments[-1].end}")
        flat_x = x.reshape(-1, x.shape[-1])
        flat_out = out.view(-1, out.shape[-1])
        per_row = flat_x.shape[0] // rows  # tokens per row: the batch dim is first, rows are contiguous
        for seg in self.state.segments:
            delta = self.deltas.get(seg.slot)
            if delta is not None:
                a, b = delta
                lo, hi = seg.start * per_row, seg.end * per_row
                flat_out[lo:hi].addmm_(flat_x[lo:hi] @ a, b)
        return out


# The bare base model's name in every layer of the inference core (decoder rows, adapter cache, engine, eval).
BASE_ADAPTER = None


class MultiLoRA:
    """Adapters by name on one base model; `rows(...)` says which adapter each row of the next forward uses."""

    BASE_SLOT = 0

    def __init__(self, model: nn.Module):
        self.model = model
        self._state = _BatchState()
        self._layers: dict[str, LoRALinear] = {}
        self._slots: dict[str, int] = {}  # adapter name -> slot
        self._slot_ids = itertools.count(1)  # never reused: a prefix cache keyed by slot can't mix up versions

    @property
    def names(self) -> list[str]:
        return list(self._slots)

    def slot(self, name: str | None) -> int:
        """The slot of a loaded adapter; None means the bare base model."""
        if name is None:
            return self.BASE_SLOT
        if name not in self._slots:
            raise KeyError(name)
        return self._slots[name]

    def load(self, name: str, path: Path) -> int:
        """Read a PEFT LoRA adapter directory and make it available under `name`. Returns its slot."""
        if name in self._slots:
            raise AdapterLoadError(
                f"an adapter named {name!r} is already loaded", "unload it first or pick another name"
            )
        path = Path(path)
        problems = check_adapter(path, need_manifest=False).lora_problems  # a bare PEFT directory runs here too
        if problems:
            raise AdapterLoadError(
                f"adapter {path} is refused: {'; '.join(problems)}", "pass a LoRA adapter made by `specialist train`"
            )
        deltas = self._read(path)
        slot = next(self._slot_ids)
        for module_name, (a, b) in deltas.items():
            self._layer(module_name).deltas[slot] = (a, b)
        self._slots[name] = slot
        return slot

    def unload(self, name: str) -> None:
        slot = self._slots.pop(name)
        for layer in self._layers.values():
            layer.deltas.pop(slot, None)

    @contextmanager
    def rows(self, slots: list[int]) -> Iterator[None]:
        """Apply adapter `slots[i]` to row i during the forward passes inside this block.

        Rows must come grouped by slot (all rows of one adapter next to each other)."""
        segments, start = [], 0
        for slot, group in itertools.groupby(slots):
            n = len(list(group))
            segments.append(Segment(slot, start, start + n))
            start += n
        if len({s.slot for s in segments}) != len(segments):
            raise ValueError("rows must be grouped by adapter slot")
        self._state.segments = tuple(s for s in segments if s.slot != self.BASE_SLOT)
        try:
            yield
        finally:
            self._state.segments = ()

    # -- loading -----------------------------------------------------------------------------------------------

    def _read(self, path: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        from safetensors.torch import load_file

        config = json.loads((path / ADAPTER_CONFIG).read_text())
        if config.get("peft_type", "LORA") != "LORA":
            raise AdapterLoadError(
                f"adapter {path} is a {config['peft_type']} adapter, not LoRA", "pass a LoRA adapter"
            )
        for key, what in _UNSUPPORTED.items():
            if config.get(key):
                raise AdapterLoadError(
                    f"adapter {path} uses {what}, which serving does not support", "train a plain LoRA adapter"
                )
        try:
            tensors = load_file(path / ADAPTER_WEIGHTS)
        except Exception as e:  # noqa: BLE001 - safetensors raises its own types for truncated files
            raise AdapterLoadError(
                f"adapter {path}: {ADAPTER_WEIGHTS} is unreadable: {str(e)[:120]}", "re-save the adapter"
            ) from None
        parts: dict[str, dict[str, torch.Tensor]] = {}
        for key, tensor in tensors.items():
            match = _KEY.match(key)
            if match is None:
                raise AdapterLoadError(f"adapter {path}: unexpected tensor {key}", "pass a LoRA-only adapter")
            parts.setdefault(match["module"], {})[match["part"]] = tensor
        modules = dict(self.model.named_modules())
        deltas = {}
        for module_name, ab in parts.items():
            base = self._base_linear(modules, module_name)
            if base is None:
                raise AdapterLoadError(
                    f"adapter {path} adapts {module_name}, which this base model has no Linear for",
                    "serve it with the base model it was trained on",
                )
            if set(ab) != {"A", "B"}:
                raise AdapterLoadError(
                    f"adapter {path}: {module_name} lacks lora_{({'A', 'B'} - set(ab)).pop()}", "re-save the adapter"
                )
            a, b = ab["A"], ab["B"]
            r = a.shape[0]
            _check_config_agrees(path, config, module_name, r)
            if a.shape != (r, base.in_features) or b.shape != (base.out_features, r):
                raise AdapterLoadError(
                    f"adapter {path}: {module_name} has shapes {tuple(a.shape)}/{tuple(b.shape)}, the base layer is "
                    f"{base.in_features}->{base.out_features}",
                    "serve it with the base model it was trained on",
                )
            scale = _alpha(config, module_name) / (math.sqrt(r) if config.get("use_rslora") else r)
            weight = base.weight
            deltas[module_name] = (
                a.t().to(weight.device, weight.dtype).contiguous(),
                (b.t() * scale).to(weight.device, weight.dtype).contiguous(),
            )
        return deltas

    def _base_linear(self, modules: dict[str, nn.Module], name: str) -> nn.Linear | None:
        module = modules.get(name)
        if isinstance(module, LoRALinear):
            return module.base
        return module if isinstance(module, nn.Linear) else None

    def _layer(self, name: str) -> LoRALinear:
        """The LoRALinear at `name`, swapping it in for the plain Linear on first use."""
        if name not in self._layers:
            parent_name, _, child = name.rpartition(".")
            parent = self.model.get_submodule(parent_name) if parent_name else self.model
            layer = LoRALinear(getattr(parent, child), self._state)
            setattr(parent, child, layer)
            self._layers[name] = layer
        return self._layers[name]


def _check_config_agrees(path: Path, config: dict, module_name: str, rank: int) -> None:
    """adapter_config.json must describe the tensors: peft would build other layers (or none) from it."""
    if not config.get("rank_pattern") and config.get("r") != rank:
        raise AdapterLoadError(
            f"adapter {path}: adapter_config.json says r={config.get('r')}, the tensors of {module_name} have rank {rank}",
            "re-save the adapter with peft",
        )
    targets = config.get("target_modules")
    leaf = module_name.rpartition(".")[2]
    if isinstance(targets, str):
        ok = targets == "all-linear" or re.fullmatch(targets, module_name) is not None
    else:
        ok = targets is None or leaf in targets or module_name in targets or "all-linear" in targets
    if not ok:
        raise AdapterLoadError(
            f"adapter {path}: adapter_config.json targets {targets}, but the weights adapt {module_name}",
            "re-save the adapter with peft, for this base model",
        )


def _alpha(config: dict, module_name: str) -> float:
    """lora_alpha, or the alpha_pattern entry matching this module (peft's own matching rule)."""
    for pattern, alpha in (config.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", module_name):
            return float(alpha)
    return float(config.get("lora_alpha", 8))
