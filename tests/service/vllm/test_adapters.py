"""What a vLLM engine can serve (refused before it is routed, with the reason) and each adapter's content id."""

from __future__ import annotations

import json
import shutil

import pytest

from service.vllm.adapters import NotServable, content_id, is_content_id, require_servable, vllm_problems


@pytest.fixture
def adapter(tmp_path, tiny_adapters):
    return shutil.copytree(tiny_adapters["alpha"], tmp_path / "a")


def _edit(adapter, **changes):
    path = adapter / "adapter_config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


def test_a_default_adapter_is_servable(adapter):
    assert vllm_problems(adapter, max_lora_rank=64) == []
    require_servable(adapter, 64)


def test_what_vllm_refuses_is_named_with_the_fix(adapter):
    rank = json.loads((adapter / "adapter_config.json").read_text())["r"]
    assert "max_lora_rank 1" in vllm_problems(adapter, max_lora_rank=1)[0]
    _edit(adapter, target_modules=["q_proj", "lm_head"], use_dora=True, bias="all")
    problems = vllm_problems(adapter, max_lora_rank=max(rank, 8))
    assert len(problems) == 3 and "['lm_head']" in problems[0] and "DoRA" in problems[1] and "bias" in problems[2]
    with pytest.raises(NotServable, match="vLLM cannot serve"):
        require_servable(adapter, 64)


def test_the_content_id_names_config_and_weights(adapter, tiny_adapters):
    name = content_id(adapter)
    assert is_content_id(name) and content_id(adapter) == name
    assert content_id(tiny_adapters["beta"]) != name  # other weights
    _edit(adapter, lora_alpha=123)
    assert content_id(adapter) != name  # same weights, another scaling: another adapter
    assert not is_content_id("../etc") and not is_content_id(name + "0")
