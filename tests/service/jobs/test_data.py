"""A job's data: SuperNI tasks are read in place; inline data becomes an inline task file the build trains and gates on."""

from tests.service.jobs.conftest import ADMIN, wait_for_job


def test_inline_data_job(job_service):
    rows = [
        {"input": f"{w} film", "output": "POS" if w in ("good", "great") else "NEG"}
        for w in ["good", "bad", "great", "awful"] * 6
    ]
    body = {
        "task": "inline",
        "instances": rows,
        "definition": "Classify as POS or NEG.",
        "held_out": 8,
        "instances_per_task": 8,
        "generalist": "none",
        "budget": {"max_steps": 2},
    }
    job, _ = wait_for_job(job_service, job_service.post("/specialists", json=body, headers=ADMIN).json()["job_id"])
    assert job["status"] == "promoted", job


def test_inline_data_becomes_an_inline_task_with_its_evaluation_set_apart(tmp_path, task_dir):
    from service.config import ServeConfig
    from service.jobs.data import task_source
    from service.jobs.schema import SpecialistRequest
    from specialist.superni import load_task
    from specialist.tasks import InlineTask

    rows = [{"input": f"text {n}", "output": str(n % 2)} for n in range(12)]
    request = SpecialistRequest(task="mine", instances=rows, definition="Parity.", held_out=4)
    job_dir = tmp_path / "jobs" / "j1"
    source, name = task_source(request, ServeConfig(task_data=task_dir), job_dir)
    assert (source, name) == (job_dir / "task.json", "mine")
    written = InlineTask.model_validate_json(source.read_text())  # a typed file, not an imitation of a SuperNI one
    assert [i.input for i in written.evaluation] == [f"text {n}" for n in range(4)]
    assert [i.input for i in written.training] == [f"text {n}" for n in range(4, 12)]
    task = load_task(source, name)
    assert len(task.evaluation) == 4 and len(task.trainable) == 8

    separate = SpecialistRequest(
        task="mine", instances=rows, definition="Parity.", eval_instances=[{"input": "held", "output": "0"}]
    )
    source, _ = task_source(separate, ServeConfig(task_data=task_dir), job_dir)
    task = load_task(source, "mine")
    assert [i.input for i in task.evaluation] == ["held"] and len(task.trainable) == 12


def test_a_superni_request_reads_the_servers_task_folder(tmp_path, task_dir):
    from service.config import ServeConfig
    from service.jobs.data import task_source
    from service.jobs.schema import SpecialistRequest
    from tests.conftest import TOY_TASK

    request = SpecialistRequest(task="toy", superni_task=TOY_TASK)
    assert task_source(request, ServeConfig(task_data=task_dir), tmp_path / "jobs" / "j1") == (task_dir, TOY_TASK)
    assert not (tmp_path / "jobs").exists()  # nothing written
