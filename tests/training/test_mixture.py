import pytest

from specialist.config import MixtureConfig
from specialist.errors import SpecialistError
from specialist.superni import HELD_OUT_INSTANCES, load_task
from tests.conftest import TOY_TASK, TOY_TASK_2
from training.mixture import GENERALIST, build_mixture


def _cfg(task_dir, generalist_file, **kw):
    kw.setdefault("task", [TOY_TASK])
    return MixtureConfig(task_data=task_dir, generalist_data=str(generalist_file), **kw)


def test_held_out_instances_are_never_trained_on(task_dir, generalist_file):
    mix = build_mixture(_cfg(task_dir, generalist_file, task=[TOY_TASK, TOY_TASK_2], instances_per_task="all"))
    for name in (TOY_TASK, TOY_TASK_2):
        task = load_task(task_dir, name)
        held_out = {i.input for i in task.evaluation} - {i.input for i in task.trainable}
        trained = {ex.input for ex in mix.examples if ex.source == name}
        assert trained and not trained & held_out
        assert len(task.evaluation) == HELD_OUT_INSTANCES
        assert mix.record.per_task[name] == len(task.trainable)


def test_ratio_and_count_give_recorded_counts(task_dir, generalist_file):
    by_ratio = build_mixture(_cfg(task_dir, generalist_file, instances_per_task=10, generalist_ratio=1.5))
    assert by_ratio.record.specialist_examples == 10 and by_ratio.record.generalist_examples == 15
    assert sum(ex.source == GENERALIST for ex in by_ratio.examples) == 15
    # 70 > 30 available records: two whole repeats plus 10 seeded extras.
    by_count = build_mixture(_cfg(task_dir, generalist_file, instances_per_task=10, generalist_count=70))
    gen = [ex.output for ex in by_count.examples if ex.source == GENERALIST]
    assert len(gen) == 70 and by_count.record.sources[GENERALIST].available == 30
    assert by_count.record.sources[GENERALIST].sha256 and by_count.record.sources[TOY_TASK].sha256
    none = build_mixture(_cfg(task_dir, generalist_file, instances_per_task=10, generalist_count=0))
    assert none.record.generalist_examples == 0 and GENERALIST not in none.record.sources


def test_mixture_is_deterministic_in_the_seed(task_dir, generalist_file):
    a = build_mixture(_cfg(task_dir, generalist_file, instances_per_task=12, generalist_ratio=1.0, seed=3))
    b = build_mixture(_cfg(task_dir, generalist_file, instances_per_task=12, generalist_ratio=1.0, seed=3))
    c = build_mixture(_cfg(task_dir, generalist_file, instances_per_task=12, generalist_ratio=1.0, seed=4))
    assert a.examples == b.examples and a.record.content_sha256 == b.record.content_sha256
    assert a.record.content_sha256 != c.record.content_sha256


def test_too_many_instances_names_task_and_available_count(task_dir, generalist_file):
    with pytest.raises(
        SpecialistError, match=r"task900_toy_sentiment has 40 trainable instances.*--instances-per-task 40"
    ):
        build_mixture(_cfg(task_dir, generalist_file, instances_per_task=41))


def test_both_generalist_amounts_is_an_error(task_dir, generalist_file):
    with pytest.raises(ValueError, match="not both"):
        _cfg(task_dir, generalist_file, generalist_ratio=1.0, generalist_count=3)


def test_instances_without_answers_are_not_trained_on_but_stay_held_out(tmp_path, generalist_file):
    from eval.benchmarks import task_benchmark
    from specialist.testing import write_superni_task

    rows = [{"id": f"x{i}", "input": f"in {i}", "output": [] if i % 10 == 0 else [f"out {i}"]} for i in range(120)]
    write_superni_task(tmp_path / "task7_gaps.json", "Copy.", rows, [], "Misc.")
    mix = build_mixture(
        MixtureConfig(
            task_data=tmp_path, task=["task7_gaps"], generalist_data=str(generalist_file), instances_per_task="all"
        )
    )
    assert mix.record.per_task["task7_gaps"] == 18  # 20 trainable, 2 without answers
    bench = task_benchmark(tmp_path, "task7_gaps")
    assert len(bench.instances) == 100 and bench.instances[0].references == [""]


def test_train_or_reuse_refuses_an_adapter_made_with_other_options(train_args, tmp_path):
    from cli.main import build_parser
    from cli.options import model_from_args
    from specialist.config import TrainConfig
    from training.recipe import train_or_reuse

    cfg = model_from_args(TrainConfig, build_parser().parse_args(train_args))
    assert train_or_reuse(cfg) == cfg.out
    assert train_or_reuse(cfg) == cfg.out  # same options: reused, not retrained
    with pytest.raises(SpecialistError, match="trained with other options"):
        train_or_reuse(cfg.model_copy(update={"seed": 99}))


def test_selection_instances_are_never_trained_on(tmp_path, generalist_file):
    from specialist.tasks import training_pool
    from specialist.testing import write_superni_task

    # Unique inputs, so "trained on" can be told by the text alone.
    rows = [{"id": f"u-{i}", "input": f"item number {i}", "output": ["yes" if i % 2 else "no"]} for i in range(160)]
    write_superni_task(tmp_path / "task950_unique.json", "Answer yes or no.", rows, [], "Misc.")
    cfg = MixtureConfig(
        task_data=tmp_path,
        task=["task950_unique"],
        generalist_data=str(generalist_file),
        instances_per_task="all",
        selection_instances=20,
    )
    trained = {ex.input for ex in build_mixture(cfg).examples}
    selection, _ = training_pool(load_task(tmp_path, "task950_unique"), 20)
    assert len(trained) == 160 - HELD_OUT_INSTANCES - 20
    assert not trained & {i.input for i in selection} and not trained & {r["input"] for r in rows[:HELD_OUT_INSTANCES]}
    with pytest.raises(SpecialistError, match="and 20 reserved for selection"):
        build_mixture(cfg.model_copy(update={"instances_per_task": 41}))
