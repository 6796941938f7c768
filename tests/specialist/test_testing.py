"""The fixture toolkit makes adapters every stage accepts, each answering its own way."""

from specialist.adapters import check_adapter, read_manifest
from specialist.base_models import resolve_base_model
from specialist.testing import random_adapters
from tests.conftest import TOY_TASK, TOY_TASK_2


def test_random_adapters_are_acceptable_distinct_and_prompted_by_their_task(tmp_path, tiny_model_dir, task_dir):
    from safetensors.torch import load_file

    base = resolve_base_model(str(tiny_model_dir))
    paths = random_adapters(tmp_path, [TOY_TASK, TOY_TASK_2], base_model=str(tiny_model_dir), task_data=task_dir)
    for path, task in zip(paths, (TOY_TASK, TOY_TASK_2)):
        check = check_adapter(path, base.content_sha256, base.id)
        assert check.ok, check.problems
        assert list(read_manifest(path).tasks) == [task]
    a, b = (load_file(p / "adapter_model.safetensors") for p in paths)
    assert a.keys() == b.keys() and any(not (a[k] == b[k]).all() for k in a)  # seeded apart
