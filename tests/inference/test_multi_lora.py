"""The inference-side LoRA (MultiLoRA) against peft, the reference implementation."""

import json
import shutil

import pytest
import torch

from inference.multi_lora import AdapterLoadError, MultiLoRA
from specialist.base_models import load_model
from tests.inference.conftest import toy_prompts as _prompts


def test_mixed_batch_logits_match_peft(base_and_tok, tiny_adapters, task_dir):
    from peft import PeftModel

    base, tok = base_and_tok
    peft_model = PeftModel.from_pretrained(load_model(base), tiny_adapters["alpha"], adapter_name="a")
    peft_model.load_adapter(tiny_adapters["beta"], adapter_name="b")
    peft_model.eval()
    model = load_model(base)
    lora = MultiLoRA(model)
    lora.load("a", tiny_adapters["alpha"])
    lora.load("b", tiny_adapters["beta"])

    batch = tok.pad({"input_ids": [tok(p)["input_ids"] for p in _prompts(task_dir)]}, return_tensors="pt")
    names = ["a", "a", "b", "b", "__base__", "__base__"]  # grouped by adapter, as the decoder orders rows
    with torch.no_grad():
        expected = peft_model(**batch, adapter_names=names).logits
        with lora.rows([lora.slot(None if n == "__base__" else n) for n in names]):
            got = model(**batch).logits
        bare = model(**batch).logits  # outside rows(): the base model, untouched
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got[:2], bare[:2], atol=1e-3), "the adapter must change the logits"
    assert torch.allclose(bare[4:], expected[4:], atol=1e-5)
    with pytest.raises(ValueError, match="grouped"):
        with lora.rows([1, 2, 1]):
            pass


def test_unusable_adapters_are_refused_with_the_reason(base_and_tok, tiny_adapters, tmp_path):
    from safetensors.torch import load_file, save_file

    base, _ = base_and_tok
    lora = MultiLoRA(load_model(base))

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_adapters["alpha"], pickled)
    (pickled / "adapter_model.safetensors").unlink()
    (pickled / "adapter_model.bin").write_bytes(b"not even opened")
    with pytest.raises(AdapterLoadError, match="pickle .bin weights are refused"):
        lora.load("p", pickled)

    wrong_shape = tmp_path / "wrong_shape"
    shutil.copytree(tiny_adapters["alpha"], wrong_shape)
    tensors = load_file(wrong_shape / "adapter_model.safetensors")
    key = next(k for k in tensors if k.endswith("lora_A.weight"))
    tensors[key] = torch.zeros(tensors[key].shape[0], tensors[key].shape[1] + 3)
    save_file(tensors, wrong_shape / "adapter_model.safetensors")
    with pytest.raises(AdapterLoadError, match="the base layer is"):
        lora.load("w", wrong_shape)

    dora = tmp_path / "dora"
    shutil.copytree(tiny_adapters["alpha"], dora)
    config = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(AdapterLoadError, match="DoRA"):
        lora.load("d", dora)
    assert lora.names == []  # nothing half-loaded


def test_unloaded_adapter_is_gone_and_slots_are_never_reused(base_and_tok, tiny_adapters):
    base, _ = base_and_tok
    lora = MultiLoRA(load_model(base))
    first = lora.load("a", tiny_adapters["alpha"])
    lora.unload("a")
    with pytest.raises(KeyError):
        lora.slot("a")
    assert lora.load("a", tiny_adapters["alpha"]) != first
