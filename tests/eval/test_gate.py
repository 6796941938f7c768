import shutil

import pytest

from cli.main import main
from eval.gate import GatePolicy, decide, load_policy, read_decision
from eval.runner import BASE, EvalRun
from specialist.errors import SpecialistError


def _run(scores: dict) -> EvalRun:
    from eval.benchmarks import Benchmark
    from specialist.prompt_format import TaskPrompt

    benches = [Benchmark(name=t, metric="exact_match", prompt=TaskPrompt(definition="d"), instances=[]) for t in scores[BASE]]
    return EvalRun(base_model="m", models=list(scores), benchmarks=benches, scores=scores)


def test_every_check_is_reported_with_numbers_and_missing_metrics_fail():
    run = _run({
        BASE: {"t1": {"score": 40.0, "exact_match": 40.0, "rougeL": 50.0}},
        "cand": {"t1": {"score": 42.0, "exact_match": 42.0, "rougeL": 55.0}},
        "champ": {"t1": {"score": 45.0, "exact_match": 45.0, "rougeL": 60.0}},
    })  # fmt: skip
    policy = GatePolicy(min_score={"score": 41, "rougeL": 60}, min_gain_over_base=5, min_gain_over_champion=-2)
    checks = {c.name: c for c in decide(run, "cand", policy, ["t1"], "champ")}
    assert checks["mean score >= 41"].passed and checks["mean score >= 41"].value == 42.0
    assert not checks["mean rougeL >= 60"].passed
    assert not checks["beats base model"].passed and checks["beats base model"].value == 2.0
    assert not checks["beats champion"].passed and checks["beats champion"].value == -3.0  # -3 < -2 allowed
    missing = decide(run, "nobody", policy, ["t1"], "champ")
    assert all(not c.passed and c.detail == "metric missing" for c in missing)


def test_policy_files_are_validated(tmp_path):
    (tmp_path / "p.yaml").write_text("min_gain_over_bsae: 3\n")
    with pytest.raises(SpecialistError, match="unknown option 'min_gain_over_bsae'"):
        load_policy(tmp_path / "p.yaml")
    (tmp_path / "p.yaml").write_text("min_score: {score: 150}\n")
    with pytest.raises(SpecialistError, match="less than or equal to 100"):
        load_policy(tmp_path / "p.yaml")
    assert load_policy(None).min_gain_over_base == 0.0


def _gate(candidate, task_dir, policy, *extra):
    return main(["gate", "--candidate", str(candidate), "--policy", str(policy), "--task-data", str(task_dir), "--no-progress", *extra])


def test_gate_cli_exit_codes_and_saved_decision(tiny_adapters, task_dir, tmp_path, capsys):
    candidate = tmp_path / "cand"
    shutil.copytree(tiny_adapters["alpha"], candidate)
    easy = tmp_path / "easy.yaml"
    easy.write_text("min_gain_over_base: -100\neval_instances: 4\n")
    assert _gate(candidate, task_dir, easy, "--champion", str(tiny_adapters["beta"])) == 0
    out = capsys.readouterr().out
    for name in ("valid LoRA-only PEFT adapter", "same base model", "beats base model", "beats champion", "PASS"):
        assert name in out
    decision = read_decision(candidate)
    assert decision.passed and set(decision.scores) == {BASE, "candidate", "champion"}

    hard = tmp_path / "hard.yaml"
    hard.write_text("min_score: {score: 100, exact_match: 100}\neval_instances: 4\n")
    assert _gate(candidate, task_dir, hard) == 1
    decision = read_decision(candidate)
    assert not decision.passed and len(decision.failures()) == 2  # both thresholds listed, not only the first

    (tmp_path / "bad.yaml").write_text("nonsense: 1\n")
    assert _gate(candidate, task_dir, tmp_path / "bad.yaml") == 2
    assert _gate(tmp_path / "missing", task_dir, easy) == 2


def test_corrupt_candidate_fails_every_check_it_cannot_run(tiny_adapters, task_dir, tmp_path, capsys):
    candidate = tmp_path / "cand"
    shutil.copytree(tiny_adapters["alpha"], candidate)
    weights = candidate / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    policy = tmp_path / "p.yaml"
    policy.write_text("min_gain_over_base: 0\neval_instances: 4\n")
    assert _gate(candidate, task_dir, policy) == 1
    decision = read_decision(candidate)
    failed = {c.name for c in decision.failures()}
    assert failed == {"valid LoRA-only PEFT adapter", "beats base model"}


def test_user_errors_during_gating_exit_2(tiny_adapters, task_dir, tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text("eval_instances: 4\nretention: {data: missing.jsonl}\n")
    assert _gate(tiny_adapters["alpha"], task_dir, policy) == 2
    assert "missing.jsonl" in capsys.readouterr().err  # resolved next to the policy file
    policy.write_text("eval_instances: 4\n")
    assert _gate(tiny_adapters["alpha"], task_dir, policy, "--champion", str(tmp_path / "nope")) == 2
