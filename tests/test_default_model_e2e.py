"""End to end on the real default model (SmolLM2-135M-Instruct from the packaged GGUF) and real SuperNI data.

Slow-marked but part of `make test`: a few training steps, then the adapter must load and change outputs.
"""

import json

import pytest
import torch

from cli.main import main
from specialist.adapters import lora_only_problems, read_manifest
from specialist.base_models import (
    DEFAULT_BASE_MODEL,
    DEFAULT_GGUF_SHA256,
    DEFAULT_SOURCE,
    load_model,
    load_tokenizer,
    resolve_base_model,
)
from tests.conftest import SHARED_ALPACA, SHARED_TASKS

SST2 = "task363_sst2_polarity_classification"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_TASKS.is_dir(), reason="../shared/data is not beside this checkout"),
]


def test_specialist_train_on_the_default_model(tmp_path, capsys):
    out = tmp_path / "sst2"
    args = [
        "train",
        "--task-data",
        str(SHARED_TASKS),
        "--task",
        SST2,
        "--generalist-data",
        str(SHARED_ALPACA),
        "--instances-per-task",
        "8",
        "--generalist-ratio",
        "0.5",
        "--max-steps",
        "3",
        "--batch-size",
        "4",
        "--learning-rate",
        "1e-3",
        "--out",
        str(out),
        "--no-progress",
        "--num-threads",
        "2",
    ]
    assert main(args) == 0, capsys.readouterr().err
    manifest = read_manifest(out)
    ref = resolve_base_model(DEFAULT_BASE_MODEL)
    assert manifest.base_model.id == DEFAULT_BASE_MODEL and manifest.base_model.content_sha256 == ref.content_sha256
    assert manifest.mixture.per_task == {SST2: 8} and manifest.mixture.generalist_examples == 4
    assert manifest.mixture.sources["generalist"].available == 51924
    assert lora_only_problems(out) == [] and manifest.training.steps == 3
    # Provenance: the Q4_1 GGUF it was converted from, and the data's licences, in the manifest and the card.
    assert manifest.base_model.source == DEFAULT_SOURCE and manifest.base_model.source_sha256 == DEFAULT_GGUF_SHA256
    assert manifest.mixture.sources["generalist"].license == "CC BY-NC 4.0"
    assert manifest.mixture.sources[SST2].license == "Unknown"  # the task file's Instance License
    card = (out / "README.md").read_text()
    assert ref.content_sha256 in card and DEFAULT_SOURCE in card and "| generalist | 4 | 51924 | CC BY-NC 4.0 |" in card

    # The adapter is a standard PEFT dir that changes what the real model computes.
    from peft import PeftModel

    tok = load_tokenizer(ref)
    base = load_model(ref, torch.device("cpu"), torch.float32)
    ids = tok(manifest.tasks[SST2].render("A gorgeous, witty, seductive movie ."), return_tensors="pt")
    with torch.no_grad():
        before = base(**ids).logits[0, -1].clone()
        adapted = PeftModel.from_pretrained(base, out)
        after = adapted(**ids).logits[0, -1]
    assert not torch.allclose(before, after)


def test_the_base_model_is_scored_fairly_under_the_stop_rule(tmp_path, capsys):
    """The default model names the label and runs on ("Negative\n\nOutput: ..."): cut by the frame's stop rule,
    it scores above 0, and the report carries the majority-label baseline and intervals."""
    import json

    out = tmp_path / "eval"
    args = [
        "eval",
        "--base",
        "--task",
        SST2,
        "--task-data",
        str(SHARED_TASKS),
        "--eval-instances",
        "24",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0, capsys.readouterr().err
    scores = json.loads((out / "scores.json").read_text())
    base = scores["models"]["base"]
    assert base["tasks"][SST2]["exact_match"] > 0 and base["interval"]["low"] > 0  # 0 without the stop rule
    assert scores["majority_label"]["labels"][SST2]["of"] > 800  # counted over the training pool, not the 24 scored
    assert scores["stop_rule"]["name"] == "frame-markers"
    report = (out / "report.md").read_text()
    assert "majority label" in report and "Confusion tables" in report


def test_the_api_dialects_new_user_checks_pass_on_the_default_model(tmp_path):
    """scripts/dialect_check.py: the official openai, huggingface_hub and text-generation clients against a live
    `specialist serve` of the real default model, with all three tokens set (~40 s)."""
    import subprocess
    import sys

    from tests.conftest import REPO

    out = tmp_path / "dialects"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "dialect_check.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    checks = json.loads(out.with_suffix(".json").read_text())["checks"]
    assert len(checks) >= 15 and all(c["passed"] for c in checks)
