"""Benchmarks: the majority-label baseline comes from training instances only, with a documented tie rule."""

from eval.benchmarks import majority_label, selection_benchmark, task_benchmark
from specialist.tasks import Instance
from specialist.testing import write_superni_task
from tests.conftest import TOY_TASK


def _instances(labels: list[str]) -> list[Instance]:
    return [Instance(id=str(i), input=str(i), output=[label]) for i, label in enumerate(labels)]


def test_majority_label_counts_normalised_answers():
    label = majority_label(_instances(["Yes", "yes.", "no", "YES", "no"]))
    assert (label.label, label.count, label.of, label.tied) == ("Yes", 3, 5, ())
    assert majority_label([]) is None


def test_majority_ties_go_to_the_alphabetically_first_label():
    label = majority_label(_instances(["neutral", "positive", "negative", "positive", "negative", "neutral"]))
    assert label.label == "negative" and label.tied == ("neutral", "positive") and label.count == 2


def test_majority_comes_from_training_instances_never_the_evaluation_set(tmp_path):
    # The held-out first 100 are all "POS"; the 40 training instances are mostly "NEG".
    rows = [
        {"id": f"m-{i}", "input": f"x{i}", "output": ["POS" if i < 100 or i % 4 == 0 else "NEG"]} for i in range(140)
    ]
    write_superni_task(tmp_path / "task951_majority.json", "Say POS or NEG.", rows, [], "Sentiment Analysis")
    bench = task_benchmark(tmp_path, "task951_majority")
    assert bench.metric == "exact_match" and bench.majority.label == "NEG" and bench.majority.of == 40
    assert bench.labels == ("neg", "pos")


def test_generation_tasks_have_no_majority_and_the_selection_set_none(task_dir, tmp_path):
    rows = [{"id": f"g-{i}", "input": f"x{i}", "output": [f"a long free-form answer number {i}"]} for i in range(140)]
    write_superni_task(tmp_path / "task952_free.json", "Write something.", rows, [], "Misc.")
    assert task_benchmark(tmp_path, "task952_free").majority is None
    selection = selection_benchmark(task_dir, TOY_TASK, 5)
    assert len(selection.instances) == 5 and selection.majority is None and selection.metric == "exact_match"
