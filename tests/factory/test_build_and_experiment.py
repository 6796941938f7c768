"""`specialist build` and `specialist experiment` end to end on the tiny fixture model."""

import csv
import json

from cli.main import main
from eval.gate import read_decision
from tests.conftest import TOY_TASK, TOY_TASK_2


def _common(tiny_model_dir, task_dir, generalist_file, out):
    return [
        "--base-model", str(tiny_model_dir), "--task-data", str(task_dir), "--generalist-data", str(generalist_file),
        "--batch-size", "4", "--max-steps", "3", "--learning-rate", "0.01", "--out", str(out),
        "--no-progress", "--num-threads", "2",
    ]  # fmt: skip


def test_build_trains_gates_and_explains_its_choice(tiny_model_dir, task_dir, generalist_file, tmp_path, capsys):
    out = tmp_path / "build"
    policy = tmp_path / "gate.yaml"
    policy.write_text("min_gain_over_base: -100\neval_instances: 8\n")  # tiny model: accept anything, score 8 instances
    args = ["build", "--task", TOY_TASK, "--instances-per-task", "8", "--candidates", "0,1.0,1:no-facts", "--policy", str(policy)]
    assert main(args + _common(tiny_model_dir, task_dir, generalist_file, out)) == 0
    decision = json.loads((out / "decision.json").read_text())
    names = [c["name"] for c in decision["candidates"]]
    assert names == ["ratio0", "ratio1", "ratio1-no-facts"]
    assert decision["chosen"] in names and decision["chosen"] in decision["reason"]
    best = max(decision["candidates"], key=lambda c: (c["mean_score"], -c["generalist_ratio"]))
    assert decision["chosen"] == best["name"]
    for cand in decision["candidates"]:
        gate = read_decision(out / "candidates" / cand["name"])
        assert gate is not None and gate.passed and gate.adapter_sha256
        assert {c.name for c in gate.checks} >= {"valid LoRA-only PEFT adapter", "same base model", "beats base model"}
    assert "chosen:" in capsys.readouterr().out


def test_build_with_an_impossible_gate_chooses_nothing(tiny_model_dir, task_dir, generalist_file, tmp_path):
    out = tmp_path / "build"
    policy = tmp_path / "gate.yaml"
    policy.write_text("min_score: {score: 100}\nmin_gain_over_base: 100\neval_instances: 4\n")
    args = ["build", "--task", TOY_TASK, "--instances-per-task", "8", "--candidates", "0", "--policy", str(policy)]
    assert main(args + _common(tiny_model_dir, task_dir, generalist_file, out)) == 1
    decision = json.loads((out / "decision.json").read_text())
    assert decision["chosen"] is None and "no candidate passed" in decision["reason"]
    assert set(decision["candidates"][0]["failed_checks"]) == {"mean score >= 100", "beats base model"}


def test_experiment_writes_csv_markdown_and_curve(tiny_model_dir, task_dir, generalist_file, tmp_path):
    out = tmp_path / "exp"
    args = [
        "experiment", "--task", TOY_TASK, "--task", TOY_TASK_2, "--instances-per-task", "4,8",
        "--generalist-ratios", "0,1", "--seeds", "1,2", "--eval-instances", "4",
    ]  # fmt: skip
    assert main(args + _common(tiny_model_dir, task_dir, generalist_file, out)) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    # base rows (one per task) + 2 instances x 2 ratios x 2 seeds x 2 tasks
    assert len(rows) == 2 + 16
    assert {r["task"] for r in rows} == {TOY_TASK, TOY_TASK_2}
    md = (out / "results.md").read_text()
    assert "| 4 |" in md and "| 8 |" in md and "±" in md
    assert (out / "curve.png").stat().st_size > 5000
    assert len(list((out / "adapters").iterdir())) == 8
