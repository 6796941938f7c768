"""A job's data: uploads stored as JSONL, and inline or uploaded instances turned into a task file for the build."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from service.config import ServeConfig
from service.jobs.schema import InlineInstance, RequestRejected, SpecialistRequest
from specialist.errors import error_line


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


def split_inline_data(request: SpecialistRequest, home: Path) -> tuple[list[InlineInstance], list[InlineInstance]]:
    """(evaluation instances, training instances) of inline or uploaded data."""
    data = request.instances if request.instances is not None else read_upload(home, request.upload_id)
    if request.eval_instances is not None:
        return request.eval_instances, data
    return data[: request.held_out], data[request.held_out :]


def materialize_task(request: SpecialistRequest, config: ServeConfig, job_dir: Path) -> tuple[Path, str, int]:
    """(task-data folder, task name, answered training instances): SuperNI tasks are used in place; inline and
    uploaded data become a task file in the upstream format whose first instances are the evaluation set."""
    from specialist.superni import HELD_OUT_KEY, load_task, training_pool

    if request.superni_task is not None:
        _, trainable = training_pool(load_task(config.task_data, request.superni_task))
        return Path(config.task_data), request.superni_task, len(trainable)
    held_out, trainable = split_inline_data(request, job_dir.parent.parent)
    rows = [
        {"id": f"{request.task}-{n}", "input": i.input, "output": i.references()}
        for n, i in enumerate([*held_out, *trainable])
    ]
    raw = {
        "Definition": [request.definition],
        "Positive Examples": [e.model_dump() for e in request.positive_examples],
        "Negative Examples": [],
        "Categories": ["Custom"],
        "Instances": rows,
        HELD_OUT_KEY: len(held_out),
        "Source": ["specialist request"],
    }
    task_dir = job_dir / "tasks"
    task_dir.mkdir(parents=True, exist_ok=True)
    (task_dir / f"{request.task}.json").write_text(json.dumps(raw, ensure_ascii=False))
    return task_dir, request.task, len(trainable)
