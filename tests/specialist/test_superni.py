import gzip

import pytest

from specialist.errors import SpecialistError
from specialist.superni import HELD_OUT_INSTANCES, load_task, select_tasks
from tests.conftest import TOY_INSTANCES, TOY_TASK, TOY_TASK_2


def test_loads_gzipped_and_plain_task_files(task_dir):
    a, b = load_task(task_dir, TOY_TASK), load_task(task_dir, TOY_TASK_2)
    assert a.path.name.endswith(".json.gz") and b.path.name.endswith(".json")
    assert len(a.evaluation) + len(a.trainable) == TOY_INSTANCES and a.definition.startswith("Classify")
    assert [e.output for e in a.positive_examples] == ["POS", "NEG"]
    assert a.categories == ("Sentiment Analysis",)


def test_first_100_instances_are_held_out(task_dir):
    import json

    task = load_task(task_dir, TOY_TASK)
    held_out, trainable = task.evaluation, task.trainable
    with gzip.open(task.path, "rt") as f:
        in_file = [i["id"] for i in json.load(f)["Instances"]]
    assert [i.id for i in held_out] == in_file[:HELD_OUT_INSTANCES]
    assert [i.id for i in trainable] == in_file[HELD_OUT_INSTANCES:]
    assert len(trainable) == TOY_INSTANCES - HELD_OUT_INSTANCES
    assert not {i.id for i in held_out} & {i.id for i in trainable}


def test_unknown_task_suggests_near_matches(task_dir):
    with pytest.raises(SpecialistError, match="did you mean task900_toy_sentiment"):
        load_task(task_dir, "task900_toy_sentimnt")


def test_select_by_name_category_and_list(task_dir, tmp_path):
    listing = tmp_path / "split.txt"
    listing.write_text(f"{TOY_TASK_2}\n\n{TOY_TASK}\n")
    assert select_tasks(task_dir, categories=["Mathematics"]) == [TOY_TASK_2]
    assert select_tasks(task_dir, names=[TOY_TASK], task_list=listing) == [TOY_TASK, TOY_TASK_2]
    with pytest.raises(SpecialistError, match="did you mean Mathematics"):
        select_tasks(task_dir, categories=["Mathematic"])
    with pytest.raises(SpecialistError, match="no task selected"):
        select_tasks(task_dir)


@pytest.mark.parametrize(
    "content, message",
    [(b'{"Definition": ["d"], "Instances": [', "invalid JSON"), (b'{"Instances": []}', "missing key 'Definition'")],
)
def test_malformed_task_file_is_named(tmp_path, content, message):
    (tmp_path / "task1_bad.json").write_bytes(content)
    with pytest.raises(SpecialistError, match=message) as err:
        load_task(tmp_path, "task1_bad")
    assert "task1_bad.json" in str(err.value)


def test_corrupt_gzip_is_named(tmp_path):
    (tmp_path / "task2_bad.json.gz").write_bytes(gzip.compress(b'{"a": 1}')[:10])
    with pytest.raises(SpecialistError, match="task2_bad.json.gz: cannot read"):
        load_task(tmp_path, "task2_bad")


def test_missing_directory(tmp_path):
    with pytest.raises(SpecialistError, match="does not exist"):
        load_task(tmp_path / "nope", TOY_TASK)


def test_the_selection_set_is_the_end_of_the_training_pool(task_dir):
    from specialist.tasks import training_pool

    task = load_task(task_dir, TOY_TASK)
    selection, pool = training_pool(task, 10)
    held_out = {i.id for i in task.evaluation}
    assert [i.id for i in selection] == [i.id for i in task.trainable[-10:]]
    assert len(pool) == TOY_INSTANCES - HELD_OUT_INSTANCES - 10
    assert not {i.id for i in selection} & {i.id for i in pool} and not {i.id for i in (*selection, *pool)} & held_out
    assert training_pool(task, 0) == ((), task.trainable)
    with pytest.raises(SpecialistError, match="fewer than the 41 asked for its selection set"):
        training_pool(task, 41)
