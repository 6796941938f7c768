"""A job's data: uploads stored as JSONL, and inline or uploaded instances turned into an inline task for the build."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from service.config import ServeConfig
from service.jobs.schema import NO_EVALUATION, InlineInstance, RequestRejected, SpecialistRequest
from specialist.errors import error_line
from specialist.prompt_format import Example
from specialist.tasks import InlineTask, Instance, write_inline_task


def uploads_dir(home: Path) -> Path:
    return Path(home) / "jobs" / "uploads"


def read_upload(home: Path, upload_id: str) -> list[InlineInstance]:
    path = uploads_dir(home) / f"{upload_id}.jsonl"
    if not path.is_file():
        raise RequestRejected(404, f"unknown upload_id {upload_id}: upload the file first (POST /uploads)")
    return [InlineInstance.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]


def save_upload(home: Path, data: bytes, limit: int) -> tuple[str, int]:
    """Validate an uploaded JSON array or JSONL of {input, output|outputs}; store it as JSONL. Returns (id, count)."""
    from pydantic import ValidationError

    if len(data) > limit:
        raise RequestRejected(413, f"upload larger than {limit} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestRejected(400, "upload is not UTF-8 text") from None
    stripped = text.lstrip()
    try:
        rows = (
            json.loads(text)
            if stripped.startswith("[")
            else [json.loads(line) for line in text.splitlines() if line.strip()]
        )
    except json.JSONDecodeError as e:
        raise RequestRejected(400, f"upload is not valid JSON/JSONL (line {e.lineno}: {e.msg})") from None
    except (RecursionError, ValueError) as e:  # nested too deeply, or an integer beyond Python's digit limit
        what = "nested too deeply" if isinstance(e, RecursionError) else error_line(e, 120)
        raise RequestRejected(400, f"upload is not valid JSON/JSONL ({what})") from None
    instances = []
    for n, row in enumerate(rows, 1):
        try:
            instances.append(InlineInstance.model_validate(row))
        except ValidationError as e:
            raise RequestRejected(
                422, f"upload record {n}: {e.errors()[0]['msg']} (records need input and output or outputs)"
            ) from None
    if not instances:
        raise RequestRejected(422, "upload has no records")
    upload_id = uuid.uuid4().hex
    folder = uploads_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{upload_id}.tmp"
    tmp.write_text("".join(i.model_dump_json(exclude_none=True) + "\n" for i in instances))
    tmp.replace(folder / f"{upload_id}.jsonl")
    return upload_id, len(instances)


def inline_task(request: SpecialistRequest, home: Path) -> InlineTask:
    """Inline or uploaded data as a task, split as the request says: its eval_instances, else the first held_out."""
    data = request.instances if request.instances is not None else read_upload(home, request.upload_id)
    if request.eval_instances is not None:
        evaluation, training = request.eval_instances, data
    else:
        evaluation, training = data[: request.held_out], data[request.held_out :]

    if not evaluation:
        raise RequestRejected(422, NO_EVALUATION)
    # Ids number the data as it was sent: evaluation first, then training.
    ids = (f"{request.task}-{n}" for n in range(len(evaluation) + len(training)))
    return InlineTask(
        name=request.task,
        definition=request.definition,
        positive_examples=tuple(Example(**e.model_dump()) for e in request.positive_examples),
        evaluation=tuple(Instance(id=next(ids), input=i.input, output=i.references()) for i in evaluation),
        training=tuple(Instance(id=next(ids), input=i.input, output=i.references()) for i in training),
    )


def task_source(request: SpecialistRequest, config: ServeConfig, job_dir: Path) -> tuple[Path, str]:
    """(task source, task name) the job's build reads: the server's SuperNI folder, or the request's data
    written as an inline task file (its evaluation set listed apart)."""
    if request.superni_task is not None:
        return Path(config.task_data), request.superni_task
    return write_inline_task(job_dir / "task.json", inline_task(request, job_dir.parent.parent)), request.task
