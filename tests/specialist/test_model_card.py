"""The adapter's README.md is a model card written from its manifest, and rewritten with the gate's result."""

import shutil

from cli.main import main
from specialist.adapters import BaseModelInfo, read_manifest
from specialist.adapters.decision import read_decision
from specialist.adapters.model_card import CARD_NAME, render_model_card
from specialist.base_models import DEFAULT_BASE_MODEL, DEFAULT_GGUF_SHA256, DEFAULT_SOURCE
from tests.conftest import TOY_TASK


def test_training_writes_a_card_with_base_task_data_and_training(tiny_adapters):
    adapter = tiny_adapters["beta"]  # 16 task + 8 generalist examples
    manifest = read_manifest(adapter)
    card = (adapter / CARD_NAME).read_text()
    assert "[More Information Needed]" not in card  # not peft's template
    assert manifest.base_model.content_sha256 in card
    assert f"### {TOY_TASK}" in card and manifest.tasks[TOY_TASK].definition in card
    assert f"| {TOY_TASK} | 16 |" in card and "| generalist | 8 |" in card
    assert manifest.mixture.content_sha256 in card and manifest.mixture.sources[TOY_TASK].sha256 in card
    assert "filter `none`" in card and "Apache 2.0" in card  # the toy task's Instance License
    assert f"{manifest.training.steps} optimizer steps" in card and "lora_rank" in card
    assert "Not gated yet" in card
    assert (adapter / CARD_NAME).stat().st_mode & 0o777 == 0o644


def test_the_gate_rewrites_the_card_with_its_result_and_intervals(tiny_adapters, task_dir, tmp_path):
    candidate = tmp_path / "cand"
    shutil.copytree(tiny_adapters["alpha"], candidate)
    policy = tmp_path / "easy.yaml"
    policy.write_text("min_gain_over_base: -100\neval_instances: 4\n")
    args = ["gate", "--candidate", str(candidate), "--policy", str(policy), "--task-data", str(task_dir)]
    assert main([*args, "--no-progress"]) == 0
    card = (candidate / CARD_NAME).read_text()
    decision = read_decision(candidate)
    assert "Gate result: **PASS**" in card and decision.adapter_sha256 in card
    gain = next(c for c in decision.checks if c.name == "beats base model")
    assert f"| beats base model | PASS | {gain.value:g} | [{gain.ci_low:g}, {gain.ci_high:g}] |" in card
    assert "90% interval" in card and f"| candidate | {TOY_TASK} |" in card
    assert "Not gated yet" not in card and read_manifest(candidate).base_model.content_sha256 in card


def test_the_default_base_models_card_names_its_gguf_source(tiny_adapters):
    manifest = read_manifest(tiny_adapters["alpha"])
    base = BaseModelInfo(
        id=DEFAULT_BASE_MODEL, content_sha256="c" * 64, source=DEFAULT_SOURCE, source_sha256=DEFAULT_GGUF_SHA256
    )
    card = render_model_card(manifest.model_copy(update={"base_model": base}))
    assert f"source: {DEFAULT_SOURCE}, sha256 `{DEFAULT_GGUF_SHA256}`" in card and "c" * 64 in card
