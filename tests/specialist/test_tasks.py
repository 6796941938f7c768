"""Inline task files: a task source whose evaluation split is stated, read like a SuperNI folder."""

import pytest

from specialist.errors import SpecialistError
from specialist.superni import load_task, select_tasks, task_categories
from specialist.tasks import InlineTask, Instance, training_pool, write_inline_task


def _inline(tmp_path, evaluation=3, training=12):
    rows = [Instance(id=str(n), input=f"x{n}", output=[f"y{n}"]) for n in range(evaluation + training)]
    task = InlineTask(
        name="mine", definition="Copy.", evaluation=tuple(rows[:evaluation]), training=tuple(rows[evaluation:])
    )
    return write_inline_task(tmp_path / "mine.json", task)


def test_an_inline_task_file_keeps_its_own_split(tmp_path):
    path = _inline(tmp_path)
    task = load_task(path, "mine")
    assert [i.id for i in task.evaluation] == ["0", "1", "2"]  # not the SuperNI first 100
    assert [i.id for i in task.trainable] == [str(n) for n in range(3, 15)]
    assert select_tasks(path, names=["mine"]) == ["mine"] and task_categories(path) == {"mine": ("Custom",)}
    selection, pool = training_pool(task, 4)
    assert [i.id for i in selection] == ["11", "12", "13", "14"] and len(pool) == 8


def test_an_inline_task_file_is_written_whole(tmp_path):
    path = _inline(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["mine.json"]  # the temp file was renamed, not left behind
    assert InlineTask.model_validate_json(path.read_text()).name == "mine"


def test_an_unknown_name_in_an_inline_task_file_names_the_one_it_holds(tmp_path):
    with pytest.raises(SpecialistError, match="unknown task 'other'.*holds one task: mine"):
        load_task(_inline(tmp_path), "other")


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"name": "t", "definition": "d", "evaluation": [], "training": []}', "evaluation: .*at least 1"),
        ('{"name": "t", "definition": "d", "training": []}', "evaluation: Field required"),
        ('{"name": "t"', "not an inline task file"),
    ],
)
def test_a_malformed_inline_task_file_is_named(tmp_path, content, message):
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(SpecialistError, match=message) as err:
        load_task(path, "t")
    assert str(path) in str(err.value)
