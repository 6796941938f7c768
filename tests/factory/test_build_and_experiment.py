"""`specialist build` and `specialist experiment` end to end on the tiny fixture model."""

import csv
import json

from cli.main import main
from specialist.adapters.decision import read_decision
from specialist.superni import load_task
from tests.conftest import TOY_TASK, TOY_TASK_2


def _common(tiny_model_dir, task_dir, generalist_file, out):
    return [
        "--base-model",
        str(tiny_model_dir),
        "--task-data",
        str(task_dir),
        "--generalist-data",
        str(generalist_file),
        "--batch-size",
        "4",
        "--max-steps",
        "3",
        "--learning-rate",
        "0.01",
        "--out",
        str(out),
        "--no-progress",
        "--num-threads",
        "2",
    ]


def test_build_selects_on_a_selection_set_and_gates_on_the_held_out_set(
    tiny_model_dir, task_dir, generalist_file, tmp_path, capsys
):
    out = tmp_path / "build"
    policy = tmp_path / "gate.yaml"
    policy.write_text("min_gain_over_base: -100\neval_instances: 8\n")  # tiny model: accept anything, score 8 instances
    args = [
        "build",
        "--task",
        TOY_TASK,
        "--instances-per-task",
        "8",
        "--candidates",
        "0,1.0,1:no-facts",
        "--policy",
        str(policy),
        "--selection-instances",
        "8",
    ]
    assert main(args + _common(tiny_model_dir, task_dir, generalist_file, out)) == 0
    decision = json.loads((out / "decision.json").read_text())
    names = [c["name"] for c in decision["candidates"]]
    assert names == ["ratio0", "ratio1", "ratio1-no-facts"]
    assert decision["selected"] == decision["chosen"] and decision["chosen"] in decision["reason"]
    # The selection set: the last 8 answered instances of the pool, disjoint from the held-out first 100.
    task = load_task(task_dir, TOY_TASK)
    ids = decision["selection"]["instance_ids"][TOY_TASK]
    assert ids == [i.id for i in task.trainable[-8:]] and not set(ids) & {i.id for i in task.evaluation}
    for cand in decision["candidates"]:
        score = cand["selection_score"]
        assert score["instances"] == 8 and score["low"] <= score["value"] <= score["high"]
    # Only the selected candidate is gated, on the held-out set, with the baselines.
    gated = [c["name"] for c in decision["candidates"] if read_decision(out / "candidates" / c["name"]) is not None]
    assert gated == [decision["selected"]]
    gate = read_decision(out / "candidates" / decision["selected"])
    assert gate.passed and {"beats base model", "beats majority label"} <= {c.name for c in gate.checks}
    assert all(c.instances == 8 for c in gate.checks if c.ci_low is not None)
    printed = capsys.readouterr().out
    assert "chosen:" in printed and "90% interval" in printed


def test_near_ties_go_to_less_generalist_data():
    from eval.benchmarks import BenchInstance, Benchmark
    from eval.runner import EvalRun
    from factory.build import _select
    from factory.decision import CandidateResult
    from specialist.prompt_format import TaskPrompt

    bench = Benchmark(
        name="t",
        metric="exact_match",
        prompt=TaskPrompt(definition="d"),
        instances=[BenchInstance(id=str(i), input=str(i), references=["a"]) for i in range(50)],
    )
    options = {"confidence": 0.9, "resamples": 2000, "seed": 0}

    def choose(right: dict[str, int]):
        run = EvalRun("m", list(right), [bench])
        for name, k in right.items():
            run.record(name, bench, ["a"] * k + ["b"] * (50 - k))
        candidates = [
            CandidateResult(
                name=n, generalist_ratio=r, generalist_filter="none", generalist_examples=int(8 * r), adapter=n
            )
            for n, r in (("ratio0", 0.0), ("ratio1", 1.0))
        ]
        return _select(candidates, run, ["t"], options)

    chosen, reason = choose({"ratio0": 30, "ratio1": 32})  # 2 points apart on 50 instances: noise
    assert (
        chosen.name == "ratio0"
        and "within the 90% interval of the best (ratio1" in reason
        and "less generalist data" in reason
    )
    chosen, reason = choose({"ratio0": 10, "ratio1": 40})  # clearly better
    assert chosen.name == "ratio1" and reason.startswith("ratio1 has the best selection score")


def test_build_with_an_impossible_gate_chooses_nothing(tiny_model_dir, task_dir, generalist_file, tmp_path):
    out = tmp_path / "build"
    policy = tmp_path / "gate.yaml"
    policy.write_text("min_score: {score: 100}\nmin_gain_over_base: 100\neval_instances: 4\n")
    args = ["build", "--task", TOY_TASK, "--instances-per-task", "8", "--candidates", "0", "--policy", str(policy)]
    assert main(args + _common(tiny_model_dir, task_dir, generalist_file, out)) == 1
    decision = json.loads((out / "decision.json").read_text())
    assert decision["chosen"] is None and decision["selection"] is None and "was not promoted" in decision["reason"]
    failed = {c["name"] for c in decision["gate"]["checks"] if not c["passed"]}
    assert failed == {"mean score >= 100", "beats base model", "beats majority label"}


def test_a_selection_set_larger_than_the_pool_is_refused(tiny_model_dir, task_dir, generalist_file, tmp_path, capsys):
    args = [
        "build",
        "--task",
        TOY_TASK,
        "--instances-per-task",
        "8",
        "--candidates",
        "0,1",
        "--selection-instances",
        "39",
    ]
    assert (
        main(args + _common(tiny_model_dir, task_dir, generalist_file, tmp_path / "b")) == 1
    )  # a user error: one line, no traceback
    err = capsys.readouterr().err
    assert "has 1 trainable instances" in err and "selection" in err and "Traceback" not in err


def test_experiment_writes_csv_json_markdown_and_curve_with_intervals(
    tiny_model_dir, task_dir, generalist_file, tmp_path
):
    out = tmp_path / "exp"
    args = [
        "experiment",
        "--task",
        TOY_TASK,
        "--task",
        TOY_TASK_2,
        "--instances-per-task",
        "4,8",
        "--generalist-ratios",
        "0,1,1:no-facts",
        "--seeds",
        "1,2",
        "--eval-instances",
        "4",
    ]
    assert main(args + _common(tiny_model_dir, task_dir, generalist_file, out)) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    # base rows (one per task) + 2 instances x 3 settings x 2 seeds x 2 tasks
    assert len(rows) == 2 + 24
    assert {r["task"] for r in rows} == {TOY_TASK, TOY_TASK_2}
    result = json.loads((out / "results.json").read_text())
    assert len(result["cells"]) == 6 and result["seeds"] == [1, 2] and result["stop_rule"]["name"] == "frame-markers"
    assert result["majority_label"]["tasks"] == 2  # both toy tasks are label tasks
    for cell in result["cells"]:
        assert cell["score"]["seeds"] == 2 and cell["score"]["low"] <= cell["score"]["value"] <= cell["score"]["high"]
        assert set(cell["train_wall_seconds"]) == {"1", "2"}
        assert (cell["versus_specialist_only"] is None) == (cell["setting"] == "ratio0")
    md = (out / "results.md").read_text()
    assert "| 4 |" in md and "| 8 |" in md and "95% interval" in md and "− specialist only" in md
    assert (out / "curve.png").stat().st_size > 5000
    assert len(list((out / "adapters").iterdir())) == 12


def test_options_the_recipe_sets_itself_are_refused_not_ignored(tmp_path):
    import pytest

    from factory.config import BuildConfig, ExperimentConfig
    from specialist.config import validate_config
    from specialist.errors import SpecialistError

    with pytest.raises(SpecialistError, match="seed is set per cell by the grid: use seeds"):
        validate_config(ExperimentConfig, {"out": tmp_path, "task": ["t"], "seed": 3}, "experiment options")
    with pytest.raises(SpecialistError, match="generalist_filter is set per cell"):
        validate_config(
            ExperimentConfig, {"out": tmp_path, "task": ["t"], "generalist_filter": "no-facts"}, "experiment options"
        )
    with pytest.raises(SpecialistError, match="generalist_ratio is set per candidate: use candidates"):
        validate_config(BuildConfig, {"out": tmp_path, "task": ["t"], "generalist_ratio": 1.0}, "build options")
    with pytest.raises(SpecialistError, match="confidence"):
        validate_config(ExperimentConfig, {"out": tmp_path, "task": ["t"], "confidence": 1.0}, "experiment options")
