import shutil

import pytest

from cli.main import main
from eval.gate import GatePolicy, checks_table, decide, load_policy
from eval.runner import EvalRun
from specialist.adapters.decision import BASE, MAJORITY, read_decision
from specialist.errors import SpecialistError


def _run(
    predictions: dict[str, list[str]], references: list[str], majority: str | None = "NEG", task: str = "t1"
) -> EvalRun:
    """An evaluation run of one label task from each model's predictions (no model needed)."""
    from eval.benchmarks import BenchInstance, Benchmark, MajorityLabel
    from specialist.prompt_format import TaskPrompt

    label = MajorityLabel(label=majority, count=60, of=100) if majority else None
    instances = [BenchInstance(id=str(i), input=str(i), references=[r]) for i, r in enumerate(references)]
    bench = Benchmark(
        name=task, metric="exact_match", prompt=TaskPrompt(definition="d"), instances=instances, majority=label
    )
    run = EvalRun(base_model="m", models=list(predictions), benchmarks=[bench])
    for model, preds in predictions.items():
        run.record(model, bench, preds)
    if label:
        run.record(MAJORITY, bench, [label.label] * len(instances))
    return run


def _right_on(references: list[str], right: set[int]) -> list[str]:
    """Predictions correct exactly on the instances in `right`."""
    flip = {"NEG": "POS", "POS": "NEG"}
    return [r if i in right else flip[r] for i, r in enumerate(references)]


REFERENCES = ["NEG" if i % 5 < 3 else "POS" for i in range(100)]  # 60% NEG: the majority label scores 60


def test_every_check_is_reported_with_numbers_intervals_and_missing_metrics_fail():
    run = _run(
        {
            BASE: _right_on(REFERENCES, set(range(20))),
            "cand": _right_on(REFERENCES, set(range(90))),
            "champ": _right_on(REFERENCES, set(range(95))),
        },
        REFERENCES,
    )
    policy = GatePolicy(min_score={"score": 41, "rougeL": 95}, min_gain_over_base=5, min_gain_over_champion=-2)
    checks = {c.name: c for c in decide(run, "cand", policy, ["t1"], "champ")}
    floor = checks["mean score >= 41"]
    assert floor.passed and floor.value == 90.0 and floor.ci_low < 90 < floor.ci_high and floor.instances == 100
    assert not checks["mean rougeL >= 95"].passed
    base = checks["beats base model"]
    assert base.passed and base.value == 70.0 and base.ci_low > 5 and base.threshold == 5
    majority = checks["beats majority label"]
    assert majority.passed and majority.value == 30.0 and majority.threshold == 5  # min_gain_over_majority follows base
    champion = checks["beats champion"]
    assert not champion.passed and champion.value == -5.0 and champion.ci_high <= -2  # clearly worse than -2 allowed
    assert not champion.undecided
    missing = decide(run, "nobody", policy, ["t1"], "champ")
    assert all(not c.passed and c.detail == "metric missing" for c in missing)


def test_a_candidate_equal_to_the_majority_label_fails_beats_majority_label():
    always_neg = ["NEG"] * len(REFERENCES)
    run = _run({BASE: _right_on(REFERENCES, set()), "cand": always_neg}, REFERENCES)
    checks = {c.name: c for c in decide(run, "cand", GatePolicy(), ["t1"])}
    assert checks["beats base model"].passed  # the base model is wrong everywhere: beating it is not enough
    majority = checks["beats majority label"]
    assert not majority.passed and majority.value == 0.0 and (majority.ci_low, majority.ci_high) == (0.0, 0.0)
    assert "not above" in majority.detail and not majority.undecided


def test_a_gain_whose_interval_straddles_the_threshold_cannot_be_decided():
    import random

    rng = random.Random(5)
    base_right = {i for i in range(100) if rng.random() < 0.5}
    cand_right = set(base_right) | {i for i in range(100) if i not in base_right and rng.random() < 0.12}
    cand_right -= set(sorted(base_right)[:3])  # some wins and some losses: a small, noisy gain
    run = _run(
        {BASE: _right_on(REFERENCES, base_right), "cand": _right_on(REFERENCES, cand_right)}, REFERENCES, majority=None
    )
    check = next(
        c for c in decide(run, "cand", GatePolicy(min_gain_over_base=0), ["t1"]) if c.name == "beats base model"
    )
    assert check.value > 0 and check.ci_low <= 0 < check.ci_high
    assert not check.passed and check.undecided
    needed = int(check.detail.split("about ")[1].split(" instances")[0])
    assert needed > 100 and "cannot decide" in check.detail and "straddles the threshold" in check.detail
    table = checks_table([check])
    assert "UNDECIDED" in table and f"[{check.ci_low:g}, {check.ci_high:g}]" in table


def test_majority_check_does_not_apply_without_label_tasks_and_null_skips():
    run = _run({BASE: _right_on(REFERENCES, set()), "cand": REFERENCES}, REFERENCES, majority=None)
    check = next(c for c in decide(run, "cand", GatePolicy(), ["t1"]) if c.name == "beats majority label")
    assert check.passed and "not applicable" in check.detail
    names = {c.name for c in decide(run, "cand", GatePolicy(min_gain_over_majority=None), ["t1"])}
    assert "beats majority label" not in names
    assert GatePolicy(min_gain_over_base=7).min_gain_over_majority == 7
    assert GatePolicy(min_gain_over_base=7, min_gain_over_majority=2).min_gain_over_majority == 2


def test_decisions_are_reproducible():
    run = _run(
        {BASE: _right_on(REFERENCES, set(range(40))), "cand": _right_on(REFERENCES, set(range(10, 60)))}, REFERENCES
    )
    first = decide(run, "cand", GatePolicy(), ["t1"])
    assert first == decide(run, "cand", GatePolicy(), ["t1"])  # same data, same seed: the same decision, bounds and all
    other_seed = decide(run, "cand", GatePolicy(bootstrap_seed=1), ["t1"])
    assert [c.value for c in other_seed] == [c.value for c in first]  # the observed gains do not depend on the seed
    assert [(c.ci_low, c.ci_high) for c in other_seed] != [(c.ci_low, c.ci_high) for c in first]  # the resamples do


def test_policy_files_are_validated(tmp_path):
    (tmp_path / "p.yaml").write_text("min_gain_over_bsae: 3\n")
    with pytest.raises(SpecialistError, match="unknown option 'min_gain_over_bsae'"):
        load_policy(tmp_path / "p.yaml")
    (tmp_path / "p.yaml").write_text("min_score: {score: 150}\n")
    with pytest.raises(SpecialistError, match="less than or equal to 100"):
        load_policy(tmp_path / "p.yaml")
    for bad in ("0", "1", "1.5", "-0.2"):
        (tmp_path / "p.yaml").write_text(f"confidence: {bad}\n")
        with pytest.raises(SpecialistError, match="invalid gate policy .*confidence: Input should be"):
            load_policy(tmp_path / "p.yaml")
    (tmp_path / "p.yaml").write_text("bootstrap_resamples: 100\n")
    with pytest.raises(SpecialistError, match="bootstrap_resamples"):
        load_policy(tmp_path / "p.yaml")
    assert load_policy(None).min_gain_over_base == 0.0


def _gate(candidate, task_dir, policy, *extra):
    return main(
        [
            "gate",
            "--candidate",
            str(candidate),
            "--policy",
            str(policy),
            "--task-data",
            str(task_dir),
            "--no-progress",
            *extra,
        ]
    )


def test_gate_cli_exit_codes_and_saved_decision(tiny_adapters, task_dir, tmp_path, capsys):
    candidate = tmp_path / "cand"
    shutil.copytree(tiny_adapters["alpha"], candidate)
    easy = tmp_path / "easy.yaml"
    easy.write_text("min_gain_over_base: -100\nmin_gain_over_champion: -100\neval_instances: 4\n")
    assert _gate(candidate, task_dir, easy, "--champion", str(tiny_adapters["beta"])) == 0
    out = capsys.readouterr().out
    for name in (
        "valid LoRA-only PEFT adapter",
        "same base model",
        "beats base model",
        "beats majority label",
        "beats champion",
        "90% interval",
        "PASS",
    ):
        assert name in out
    decision = read_decision(candidate)
    assert decision.passed and set(decision.scores) == {BASE, "candidate", "champion", MAJORITY}
    assert decision.stop_rule["name"] == "frame-markers" and decision.confidence == 0.9
    gain = next(c for c in decision.checks if c.name == "beats base model")
    assert gain.ci_low is not None and gain.ci_low <= gain.value <= gain.ci_high and gain.instances == 4

    hard = tmp_path / "hard.yaml"
    hard.write_text("min_score: {score: 100, exact_match: 100}\nmin_gain_over_base: -100\neval_instances: 4\n")
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
    assert failed == {"valid LoRA-only PEFT adapter", "beats base model", "beats majority label"}


def test_user_errors_during_gating_exit_2(tiny_adapters, task_dir, tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text("eval_instances: 4\nretention: {data: missing.jsonl}\n")
    assert _gate(tiny_adapters["alpha"], task_dir, policy) == 2
    assert "missing.jsonl" in capsys.readouterr().err  # resolved next to the policy file
    policy.write_text("eval_instances: 4\n")
    assert _gate(tiny_adapters["alpha"], task_dir, policy, "--champion", str(tmp_path / "nope")) == 2
