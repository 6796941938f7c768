"""`specialist train --nproc 2`: two CPU processes (gloo) on the tiny model take the single-process run's steps.

Tolerance: the ranks' gradients are summed in another order than one process sums its rows, so losses agree to
float32 rounding, not bit for bit: relative 1e-4 over 6 steps (measured: 1.4e-7, at the manifest's 6 decimals). Dropout is 0, because
each rank draws its own masks."""

from __future__ import annotations

import pytest

from cli.main import main
from specialist.adapters import read_manifest
from tests.training.test_recipe import _set, crash_during_step


@pytest.fixture
def ddp_args(train_args):
    return _set(_set(train_args, "--max-steps", "6"), "--batch-size", "4") + [
        "--lora-dropout",
        "0",
        "--grad-accum",
        "2",
    ]


def test_two_processes_give_the_single_process_loss_sequence(ddp_args, tmp_path):
    assert main(_set(ddp_args, "--out", str(tmp_path / "one"))) == 0
    assert main(_set(ddp_args, "--out", str(tmp_path / "two")) + ["--nproc", "2"]) == 0
    one, two = read_manifest(tmp_path / "one"), read_manifest(tmp_path / "two")
    assert two.loss_curve == pytest.approx(one.loss_curve, rel=1e-4, abs=1e-6)
    assert two.training.processes == 2 and one.training.processes == 1
    assert two.training.global_batch == one.training.global_batch == 8  # batch 4 x grad-accum 2, in both
    assert two.training.tokens == one.training.tokens and two.training.examples_seen == one.training.examples_seen
    assert not (tmp_path / ".two.partial").exists()  # rank 0 published the adapter and cleaned up


def test_a_checkpoint_resumes_in_two_processes(ddp_args, tmp_path, monkeypatch):
    args = ddp_args + ["--checkpoint-every", "2"]
    assert main(_set(args, "--out", str(tmp_path / "straight"))) == 0
    resumed = _set(args, "--out", str(tmp_path / "resumed"))
    crash_during_step(resumed, 5, monkeypatch)  # after the step-4 checkpoint, in one process
    assert main(resumed + ["--resume", "--nproc", "2"]) == 0  # from the step-4 checkpoint, in two processes
    expected = read_manifest(tmp_path / "straight").loss_curve
    assert read_manifest(tmp_path / "resumed").loss_curve == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_a_bad_option_is_one_line_before_any_process_starts(ddp_args, tmp_path, capsys):
    args = _set(_set(ddp_args, "--out", str(tmp_path / "x")), "--task", "no_such_task") + ["--nproc", "2"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "no_such_task" in err and "Traceback" not in err
