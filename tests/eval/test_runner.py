import json

import pytest
import torch

from eval.benchmarks import custom_benchmark, default_metric, task_benchmark
from eval.generate import GenerationRequest, generate, load_decoder
from eval.runner import run_eval
from inference.multi_lora import BASE_ADAPTER
from specialist.adapters.decision import BASE
from specialist.base_models import load_model, load_tokenizer, resolve_base_model
from specialist.errors import SpecialistError
from tests.conftest import TOY_TASK


def test_default_metric_rule():
    assert default_metric([["POS"], ["NEG"], ["POS"]]) == "exact_match"
    assert default_metric([[f"a long answer number {i}"] for i in range(30)]) == "rougeL"
    assert default_metric([[f"label{i}"] for i in range(50)]) == "rougeL"  # too many distinct labels


def test_mixed_adapter_batch_equals_separate_runs(tiny_model_dir, tiny_adapters, task_dir):
    base = resolve_base_model(str(tiny_model_dir))
    tok = load_tokenizer(base, padding_side="left")
    decoder = load_decoder(
        load_model(base, torch.device("cpu"), torch.float32),
        tok,
        {"a": tiny_adapters["alpha"], "b": tiny_adapters["beta"]},
    )
    bench = task_benchmark(task_dir, TOY_TASK, limit=6)
    prompts = [bench.prompt.render(i.input) for i in bench.instances]
    names = ["a", "b", BASE_ADAPTER]
    mixed = generate(
        decoder, [GenerationRequest(p, names[k % 3]) for k, p in enumerate(prompts)], 6, batch_size=6, progress=False
    )
    for k, p in enumerate(prompts):
        alone = generate(decoder, [GenerationRequest(p, names[k % 3])], 6, batch_size=1, progress=False)
        assert alone == [mixed[k]]
    per_adapter = {n: generate(decoder, [GenerationRequest(p, n) for p in prompts], 6, progress=False) for n in names}
    assert len({tuple(v) for v in per_adapter.values()}) > 1, "adapters must actually change the outputs"


def test_run_eval_scores_every_model_in_one_pass(tiny_model_dir, tiny_adapters, task_dir):
    base = resolve_base_model(str(tiny_model_dir))
    run = run_eval(
        base, tiny_adapters, [task_benchmark(task_dir, TOY_TASK, limit=8)], include_base=True, progress=False
    )
    assert run.models == [BASE, "alpha", "beta"]
    for name in run.models:
        scores = run.scores[name][TOY_TASK]
        assert set(scores) == {"exact_match", "rougeL", "score"} and scores["score"] == scores["exact_match"]
        assert len(run.predictions[name][TOY_TASK]) == 8


def test_adapter_for_another_base_is_refused(tiny_adapters, task_dir):
    other = resolve_base_model("smollm2-135m-instruct")
    with pytest.raises(SpecialistError, match="was trained for base model"):
        run_eval(
            other, {"alpha": tiny_adapters["alpha"]}, [task_benchmark(task_dir, TOY_TASK, limit=2)], progress=False
        )


def test_custom_benchmark_file(tmp_path):
    path = tmp_path / "bench.jsonl"
    path.write_text(
        '{"id": "1", "input": "a", "references": ["x"]}\n{"id": "2", "input": "b", "references": ["y", "z"]}\n'
    )
    bench = custom_benchmark(path, "mine", "Answer x or y.")
    assert bench.metric == "exact_match" and [i.id for i in bench.instances] == ["1", "2"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "input": "a", "references": []}\n')
    with pytest.raises(SpecialistError, match="bad.jsonl, line 1: references"):
        custom_benchmark(bad, "mine", "d")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(SpecialistError, match="no instances"):
        custom_benchmark(tmp_path / "empty.jsonl", "mine", "d")


def test_eval_cli_writes_scores_predictions_report_and_chart(tiny_adapters, task_dir, tmp_path, capsys):
    from cli.main import main

    out = tmp_path / "eval"
    args = [
        "eval",
        "--adapter",
        f"a={tiny_adapters['alpha']}",
        "--adapter",
        str(tiny_adapters["beta"]),
        "--base",
        "--task-data",
        str(task_dir),
        "--task",
        TOY_TASK,
        "--eval-instances",
        "6",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    scores = json.loads((out / "scores.json").read_text())
    assert set(scores["models"]) == {BASE, "a", "beta"}
    assert scores["models"]["a"]["delta_vs_base"][TOY_TASK] == pytest.approx(
        scores["models"]["a"]["tasks"][TOY_TASK]["score"] - scores["models"][BASE]["tasks"][TOY_TASK]["score"]
    )
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 18
    report = (out / "report.md").read_text()
    assert TOY_TASK in report and "| **mean** |" in report
    assert (out / "chart.png").stat().st_size > 5000
    # The official files round-trip through `eval score` to the same numbers.
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "score",
                "--predictions",
                str(out / "predictions_a.jsonl"),
                "--references",
                str(out / "references.jsonl"),
            ]
        )
        == 0
    )
    official = json.loads(capsys.readouterr().out)
    assert official[f"exact_match_for_{TOY_TASK}"] == scores["models"]["a"]["tasks"][TOY_TASK]["exact_match"]
    assert official["rougeL"] == scores["models"]["a"]["tasks"][TOY_TASK]["rougeL"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--task", "task900_toy_sentimnt"], "did you mean"),
        (["--category", "Nonsense Category"], "no task in"),
        (["--benchmark", "x.jsonl"], "needs --definition"),
        (["--task", "task900_toy_sentiment", "--adapter", "/nonexistent/adapter"], "has no manifest.json"),
    ],
)
def test_eval_bad_input_is_one_line(task_dir, tmp_path, capsys, extra, message):
    from cli.main import main

    assert main(["eval", "--task-data", str(task_dir), "--out", str(tmp_path / "o"), "--base", *extra]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_primary_metric_does_not_depend_on_the_instance_limit(tmp_path):
    from specialist.testing import write_superni_task

    # First 10 held-out answers are labels, the rest free text: the metric must come from all 100.
    rows = [
        {"id": str(i), "input": "q", "output": ["yes" if i < 10 else f"a long free text answer {i}"]}
        for i in range(120)
    ]
    write_superni_task(tmp_path / "task8_mixed.json", "Answer.", rows, [], "Misc.")
    assert task_benchmark(tmp_path, "task8_mixed").metric == "rougeL"
    assert task_benchmark(tmp_path, "task8_mixed", limit=10).metric == "rougeL"


def test_eval_rejects_bad_counts_at_the_command_line(task_dir, tmp_path, capsys):
    from cli.main import main

    # One CLI dialect: a bad option value is a usage error, one line naming the option, exit 2, in every command.
    for flag, value in (("--eval-instances", "-1"), ("--eval-instances", "101"), ("--batch-size", "0")):
        assert (
            main(
                [
                    "eval",
                    "--task-data",
                    str(task_dir),
                    "--task",
                    TOY_TASK,
                    "--base",
                    "--out",
                    str(tmp_path),
                    flag,
                    value,
                ]
            )
            == 2
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: invalid eval options: ")
        assert flag.removeprefix("--").replace("-", "_") + ": Input should be" in err[0]


class _ScriptedDecoder:
    """Stands in for `inference.decoder.Decoder`: every row 'generates' the same scripted text, token by token,
    and stops as soon as `on_token` says so; it records how many tokens each row was given."""

    def __init__(self, tokenizer, text: str):
        self.tokenizer = tokenizer
        self.script = tokenizer(text, add_special_tokens=False)["input_ids"]
        self.consumed: list[int] = []

    def prefix_len(self, prompt, ids):
        return 0

    def decode(self, rows, on_token=None):
        outputs = []
        for k, _ in enumerate(rows):
            out = []
            for token in self.script:
                out.append(token)
                if on_token is not None and on_token(k, token, 0.0):
                    break
            self.consumed.append(len(out))
            outputs.append(out)
        return outputs


def test_generation_ends_by_the_stop_rule_for_every_model(tiny_model_dir):
    base = resolve_base_model(str(tiny_model_dir))
    tokenizer = load_tokenizer(base)
    decoder = _ScriptedDecoder(tokenizer, " NEG\n\nOutput: POS and much more text that follows here")
    requests = [GenerationRequest("Definition: d\n\nInput: x\nOutput:", a) for a in (BASE_ADAPTER, "a")]
    assert generate(decoder, requests, 64, progress=False) == ["NEG", "NEG"]
    script_tokens = len(decoder.script)
    assert all(n < script_tokens - 5 for n in decoder.consumed), "decoding must stop at the marker, not run to the end"
    multi = _ScriptedDecoder(tokenizer, " first line\nsecond line")  # a newline inside an answer does not stop it
    assert generate(multi, requests[:1], 64, progress=False) == ["first line\nsecond line"]


def test_run_eval_scores_the_majority_label_of_label_tasks(tiny_model_dir, tiny_adapters, task_dir):
    from specialist.adapters.decision import MAJORITY

    base = resolve_base_model(str(tiny_model_dir))
    bench = task_benchmark(task_dir, TOY_TASK, limit=8)
    run = run_eval(base, {"alpha": tiny_adapters["alpha"]}, [bench], include_base=True, progress=False)
    assert MAJORITY not in run.models and run.label_tasks == [TOY_TASK]
    assert run.predictions[MAJORITY][TOY_TASK] == [bench.majority.label] * 8
    expected = 100 * sum(bench.majority.label in i.references for i in bench.instances) / 8
    assert run.scores[MAJORITY][TOY_TASK]["exact_match"] == expected
    assert len(run.instance_scores["alpha"][TOY_TASK]["score"]) == 8
    interval = run.interval("alpha", BASE, confidence=0.9)
    assert interval.low <= interval.value <= interval.high and interval.instances == 8


def test_a_marker_cut_off_by_the_token_budget_is_not_scored(tiny_model_dir):
    tokenizer = load_tokenizer(resolve_base_model(str(tiny_model_dir)))
    decoder = _ScriptedDecoder(tokenizer, " NEG\n\nInput")  # the budget ran out before the marker's ':'
    assert generate(decoder, [GenerationRequest("Definition: d\n\nOutput:", BASE_ADAPTER)], 64, progress=False) == [
        "NEG"
    ]
