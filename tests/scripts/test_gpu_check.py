"""scripts/gpu_check.py, the parts that do not need a GPU: the MFU arithmetic, the peak table, the report, and
the refusal on a machine without one (the stages themselves are the CLI's and the benchmark's, tested there)."""

from __future__ import annotations

import json

import pytest
import torch

from scripts import gpu_check
from tests.conftest import TOY_TASK


def test_mfu_follows_the_4n_convention():
    # 135M parameters at 100k tokens/s on a 989-TFLOPS GPU: 4 * 1.35e8 * 1e5 = 5.4e13 FLOP/s = 5.46% of the peak.
    assert gpu_check.mfu(135_000_000, 100_000, 989.0) == pytest.approx(0.0546, abs=1e-4)
    assert gpu_check.mfu(135_000_000, 100_000, None) is None


def test_the_peak_comes_from_the_table_or_the_flag():
    assert gpu_check.peak_tflops("NVIDIA H200", None) == 989.0
    assert gpu_check.peak_tflops("NVIDIA A100-SXM4-80GB", None) == 312.0
    assert gpu_check.peak_tflops("Some Future GPU", None) is None
    assert gpu_check.peak_tflops("Some Future GPU", 500.0) == 500.0


def test_the_report_shows_every_stage():
    check = gpu_check.GpuCheck(
        gpu="NVIDIA H200",
        torch="2.13.0",
        train=gpu_check.TrainStage(
            device="cuda",
            dtype="bfloat16",
            steps=60,
            tokens=500_000,
            tokens_per_second=50_000.0,
            wall_seconds=10.0,
            parameters=134_515_008,
            peak_tflops=989.0,
            mfu=gpu_check.mfu(134_515_008, 50_000.0, 989.0),
        ),
        eval=gpu_check.EvalStage(instances=100, seconds=12.5, scores={"base": 41.0, "specialist": 88.0}),
        serve={"by_clients": {"8": {"ours_8_adapters": {"tokens_per_second": 900.0}, "ratio_x": 1.0}}},
        seconds=300.0,
    )
    text = gpu_check.markdown(check)
    assert "50,000 tokens/s; MFU 2.7%" in text and "specialist 88.0" in text and "ours_8_adapters 900.0 tok/s" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the check would run")
def test_without_a_gpu_it_says_so_and_exits_2(capsys, tmp_path):
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().out


def test_eval_scores_are_read_from_the_runners_own_scores_json(tiny_adapters, task_dir, tmp_path, monkeypatch):
    """The eval stage reads what `specialist eval` writes (a real run on the tiny model, not a hand-made dict)."""
    from cli.main import main

    out = tmp_path / "eval"
    args = ["eval", "--adapter", f"specialist={tiny_adapters['alpha']}", "--base", "--task-data", str(task_dir)]
    assert main([*args, "--task", TOY_TASK, "--eval-instances", "4", "--out", str(out), "--no-progress"]) == 0
    monkeypatch.setattr(gpu_check, "TASK", TOY_TASK)
    scores = gpu_check._task_scores(json.loads((out / "scores.json").read_text()))
    assert set(scores) == {"base", "specialist"} and all(0 <= v <= 100 for v in scores.values())
