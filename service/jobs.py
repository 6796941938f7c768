"""Specialist requests as tracked background jobs: the request schema, the persisted job table, the worker.

    POST /specialists {"task": "sst2", "superni_task": "task363_sst2_polarity_classification",
                       "instances_per_task": 16, "generalist": "auto", "budget": {"max_steps": 200}}

Stages: queued -> preparing -> training -> evaluating -> gating -> promoted | rejected | failed | canceled.
Jobs live in SQLite under $SPECIALIST_HOME/jobs/ (a restart loses no record; a job cut off by a restart is
marked failed, and nothing is half-promoted because promotion is the job's last, atomic step). One worker
thread runs one job at a time per device, each in its own process (`python -m service.job_runner ID`), so
training never blocks the serving event loop and a cancel can stop it at once.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from eval.benchmarks import GateMetric, Metric
from service.config import TextBody
from specialist.errors import SpecialistError, error_line
from specialist.paths import validate_name
from specialist.sqlite import connect

Stage = Literal["queued", "preparing", "training", "evaluating", "gating", "promoted", "rejected", "failed", "canceled"]
FINAL: tuple[str, ...] = ("promoted", "rejected", "failed", "canceled")
RUNNING: tuple[str, ...] = ("preparing", "training", "evaluating", "gating")


# -- the request ---------------------------------------------------------------------------------------------

class _Body(TextBody):  # finite numbers and valid Unicode, as every request body
    model_config = ConfigDict(extra="forbid")


class InlineInstance(_Body):
    input: str = Field(max_length=20_000)
    output: str | None = Field(None, max_length=20_000)
    outputs: list[str] | None = Field(None, min_length=1, max_length=16)

    @model_validator(mode="after")
    def _one_answer(self):
        if (self.output is None) == (self.outputs is None):
            raise ValueError("give output or outputs")
        return self

    def references(self) -> list[str]:
        return self.outputs if self.outputs is not None else [self.output]


class InlineExample(_Body):
    input: str = Field(max_length=20_000)
    output: str = Field(max_length=20_000)


class Ratio(_Body):
    ratio: float = Field(ge=0, le=100)


class Count(_Body):
    count: int = Field(ge=0, le=1_000_000)


class Budget(_Body):
    max_steps: int | None = Field(None, ge=1, le=100_000)
    epochs: float | None = Field(None, gt=0, le=100)
    max_wall_seconds: float | None = Field(None, ge=10, le=7 * 24 * 3600)

    @model_validator(mode="after")
    def _one_length(self):
        if self.max_steps is not None and self.epochs is not None:
            raise ValueError("give max_steps or epochs, not both")
        return self


class LoraOverrides(_Body):
    rank: int | None = Field(None, ge=1, le=256)
    alpha: float | None = Field(None, gt=0, le=1024)
    dropout: float | None = Field(None, ge=0, lt=1)
    learning_rate: float | None = Field(None, gt=0, le=1)


class GateOverrides(_Body):
    """May only tighten the operator's policy (checked when the job is accepted)."""

    min_score: dict[GateMetric, float] = Field(default_factory=dict)
    min_gain_over_base: float | None = Field(None, ge=-100, le=100)
    min_gain_over_majority: float | None = Field(None, ge=-100, le=100)
    min_gain_over_champion: float | None = Field(None, ge=-100, le=100)
    eval_instances: int | None = Field(None, ge=1, le=1000)
    confidence: float | None = Field(None, gt=0, lt=1, description="may only be raised")


class SpecialistRequest(_Body):
    task: str = Field(description="the name it will be served under")
    superni_task: str | None = Field(None, description="a task file in the server's task-data directory")
    instances: list[InlineInstance] | None = Field(None, max_length=100_000)
    definition: str | None = Field(None, max_length=20_000)
    positive_examples: list[InlineExample] = Field(default_factory=list, max_length=8)
    upload_id: str | None = Field(None, pattern=r"^[0-9a-f]{32}$")
    eval_instances: list[InlineInstance] | None = Field(None, max_length=10_000, description="a separate evaluation set")
    held_out: int = Field(100, ge=1, le=10_000, description="evaluation instances taken from the provided data")
    selection_instances: int = Field(
        50, ge=1, le=10_000, description="instances kept out of training to choose between candidates (with several candidates)"
    )
    metric: Metric | None = None
    instances_per_task: int | Literal["all"] = 64
    generalist: Literal["auto", "none"] | Ratio | Count = "auto"
    budget: Budget = Field(default_factory=Budget)
    lora: LoraOverrides = Field(default_factory=LoraOverrides)
    gate: GateOverrides = Field(default_factory=GateOverrides)

    @model_validator(mode="after")
    def _one_source(self):
        try:
            validate_name(self.task, "task name")
        except SpecialistError as e:
            raise ValueError(str(e)) from None
        sources = [self.superni_task is not None, self.instances is not None, self.upload_id is not None]
        if sum(sources) != 1:
            raise ValueError("give exactly one of superni_task, instances or upload_id")
        if (self.instances is not None or self.upload_id is not None) and not self.definition:
            raise ValueError("inline or uploaded instances need a definition")
        if isinstance(self.instances_per_task, int) and self.instances_per_task < 1:
            raise ValueError("instances_per_task must be >= 1 or 'all'")
        return self


# -- the job table ---------------------------------------------------------------------------------------------

def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class JobStore:
    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY, task TEXT NOT NULL, status TEXT NOT NULL, request TEXT NOT NULL,
        progress TEXT NOT NULL DEFAULT '{}', result TEXT NOT NULL DEFAULT '{}', error TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0, promoting INTEGER NOT NULL DEFAULT 0, pid INTEGER,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL, started_at TEXT, finished_at TEXT);
    """

    _ADDED_COLUMNS = {"promoting": "INTEGER NOT NULL DEFAULT 0", "pid": "INTEGER"}

    def __init__(self, home: Path):
        self.root = Path(home) / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "jobs.sqlite"
        with self._connect() as db:
            db.executescript(self._SCHEMA)
            # Homes made by an earlier version lack newer columns: add them (SQLite cannot ALTER ... IF NOT EXISTS).
            have = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
            for column, ddl in self._ADDED_COLUMNS.items():
                if column not in have:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {ddl}")

    def _connect(self):
        return connect(self.db_path)

    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def create(self, request: SpecialistRequest) -> str:
        """Queue a job; refuses a task that already has a queued or running job (atomically)."""
        job_id = uuid.uuid4().hex
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            busy = db.execute(
                f"SELECT id FROM jobs WHERE task = ? AND status IN ({','.join('?' * (len(RUNNING) + 1))})",
                (request.task, "queued", *RUNNING),
            ).fetchone()
            if busy is not None:
                db.execute("ROLLBACK")
                raise DuplicateJob(request.task, busy["id"])
            db.execute(
                "INSERT INTO jobs (id, task, status, request, created_at, updated_at) VALUES (?, ?, 'queued', ?, ?, ?)",
                (job_id, request.task, request.model_dump_json(), _now(), _now()),
            )
            db.execute("COMMIT")
        return job_id

    def get(self, job_id: str) -> dict | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else self._public(row)

    def list(self, limit: int = 100) -> list[dict]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)).fetchall()
        return [self._public(r, brief=True) for r in rows]

    def request(self, job_id: str) -> SpecialistRequest:
        with self._connect() as db:
            row = db.execute("SELECT request FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return SpecialistRequest.model_validate_json(row["request"])

    def update(self, job_id: str, status: str | None = None, progress: dict | None = None, result: dict | None = None,
               error: str | None = None) -> None:  # fmt: skip
        sets, values = ["updated_at = ?"], [_now()]
        if status is not None:
            sets.append("status = ?")
            values.append(status)
            if status in RUNNING:
                sets.append("started_at = COALESCE(started_at, ?)")
                values.append(_now())
            if status in FINAL:
                sets.append("finished_at = ?")
                values.append(_now())
        for column, value in (("progress", progress), ("result", result)):
            if value is not None:
                sets.append(f"{column} = ?")
                values.append(json.dumps(value))
        if error is not None:
            sets.append("error = ?")
            values.append(error)
        with self._connect() as db:
            # A final status is never overwritten (a late update from a dying process must not revive a job).
            db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ? AND status NOT IN ({','.join('?' * len(FINAL))})",
                       (*values, job_id, *FINAL))  # fmt: skip

    def request_cancel(self, job_id: str) -> str | None:
        """Cancel a queued job at once, or flag a running one for the worker; returns the status after.
        A job already promoting (registering its adapter) finishes: the cancel came too late."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT status, promoting FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                db.execute("ROLLBACK")
                return None
            if row["status"] == "queued":
                db.execute("UPDATE jobs SET status = 'canceled', finished_at = ?, updated_at = ? WHERE id = ?", (_now(), _now(), job_id))
            elif row["status"] in RUNNING and not row["promoting"]:
                db.execute("UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ?", (_now(), job_id))
            db.execute("COMMIT")
        return self.get(job_id)["status"]

    def claim(self, job_id: str, pid: int | None = None) -> bool:
        """Atomically move a queued job to 'preparing' (False if it was canceled in the meantime)."""
        with self._connect() as db:
            cur = db.execute(
                "UPDATE jobs SET status = 'preparing', progress = ?, started_at = ?, updated_at = ? WHERE id = ? AND status = 'queued'",
                (json.dumps({"stage": "preparing"}), _now(), _now(), job_id),
            )
            return cur.rowcount == 1

    def set_pid(self, job_id: str, pid: int) -> None:
        with self._connect() as db:
            db.execute("UPDATE jobs SET pid = ? WHERE id = ?", (pid, job_id))

    def begin_promotion(self, job_id: str) -> bool:
        """The point of no return: True (and cancels are refused from now on) unless a cancel came first."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT status, cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
            ok = row is not None and row["status"] in RUNNING and not row["cancel_requested"]
            if ok:
                db.execute("UPDATE jobs SET promoting = 1, updated_at = ? WHERE id = ?", (_now(), job_id))
            db.execute("COMMIT")
            return ok

    def promoting(self, job_id: str) -> bool:
        with self._connect() as db:
            row = db.execute("SELECT promoting FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row["promoting"])

    def cancel_requested(self, job_id: str) -> bool:
        with self._connect() as db:
            row = db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row["cancel_requested"])

    def next_queued(self) -> str | None:
        with self._connect() as db:
            row = db.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at, rowid LIMIT 1").fetchone()
        return row["id"] if row else None

    def fail_interrupted(self) -> int:
        """At start: jobs that were running when the service stopped are failed, never left half-done; a job
        process that outlived the service (it runs in its own session) is stopped first."""
        with self._connect() as db:
            rows = db.execute(f"SELECT pid FROM jobs WHERE pid IS NOT NULL AND status IN ({','.join('?' * len(RUNNING))})", RUNNING).fetchall()
        for row in rows:
            _stop_job_process(row["pid"])
        with self._connect() as db:
            cur = db.execute(
                f"UPDATE jobs SET status = 'failed', error = 'interrupted by a service restart', finished_at = ?, updated_at = ? "
                f"WHERE status IN ({','.join('?' * len(RUNNING))})",
                (_now(), _now(), *RUNNING),
            )
            return cur.rowcount

    @staticmethod
    def _public(row: sqlite3.Row, brief: bool = False) -> dict[str, Any]:
        job = {
            "job_id": row["id"], "task": row["task"], "status": row["status"], "progress": json.loads(row["progress"]),
            "error": row["error"], "created_at": row["created_at"], "started_at": row["started_at"],
            "finished_at": row["finished_at"],
        }  # fmt: skip
        if not brief:
            job["result"] = json.loads(row["result"])
            job["request"] = json.loads(row["request"])
        return job


def _stop_job_process(pid: int) -> None:
    """SIGTERM a leftover job runner's process group, only if that pid still is a job runner."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"service.job_runner" in cmdline:
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass


class DuplicateJob(Exception):
    def __init__(self, task: str, job_id: str):
        super().__init__(f"a job for task {task!r} is already queued or running ({job_id})")
        self.job_id = job_id


# -- the worker ------------------------------------------------------------------------------------------------

class JobWorker:
    """Runs queued jobs one at a time, each in its own process; enforces cancel and the wall-time budget."""

    def __init__(self, store: JobStore, home: Path, env: dict[str, str] | None = None, poll_seconds: float = 0.5):
        self.store, self.home, self.poll = store, Path(home), poll_seconds
        self.env = dict(os.environ if env is None else env, SPECIALIST_HOME=str(self.home))
        self._stop = threading.Event()
        self.current: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._run, name="job-worker", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self.current is not None and self.current.poll() is None:
            os.killpg(self.current.pid, signal.SIGTERM)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            job_id = None
            try:
                job_id = self.store.next_queued()
                if job_id is not None and self.store.claim(job_id):
                    self._execute(job_id)
            except Exception as e:  # noqa: BLE001 - one bad job must not stop the queue
                logging.getLogger("specialist.service").exception("job %s failed in the worker", job_id)
                if job_id is not None:
                    self.store.update(job_id, status="failed", error=f"worker error: {type(e).__name__}: {e}")

    def _execute(self, job_id: str) -> None:
        budget = self.store.request(job_id).budget.max_wall_seconds
        log = open(self.store.job_dir(job_id).with_suffix(".log"), "ab")
        self.current = proc = subprocess.Popen(
            [sys.executable, "-m", "service.job_runner", job_id],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.store.set_pid(job_id, proc.pid)
        started = time.time()
        reason = None
        while proc.poll() is None:
            if self._stop.wait(self.poll):
                reason = None  # service shutting down: the restart marks the job failed
                break
            if self.store.promoting(job_id):
                continue  # registering its adapter: let it finish (cancels and the budget no longer apply)
            if self.store.cancel_requested(job_id):
                reason = "canceled"
            elif budget is not None and time.time() - started > budget:
                reason = f"exceeded the wall-time budget of {budget:g} s"
            if reason:
                break
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the whole process group: no orphaned training
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        self.current = None
        if reason == "canceled":
            self.store.update(job_id, status="canceled", error="canceled by request; nothing was promoted")
        elif reason:
            self.store.update(job_id, status="failed", error=reason)
        elif not self._stop.is_set() and self.store.get(job_id)["status"] not in FINAL:
            self.store.update(job_id, status="failed", error=f"the job process exited with code {proc.returncode} (see {log.name})")


# -- accepting a request and preparing its data ------------------------------------------------------------------

class RequestRejected(Exception):
    """A request that must not be queued: `status` is the HTTP code, the message says why and how to fix it."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


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
        rows = json.loads(text) if stripped.startswith("[") else [json.loads(line) for line in text.splitlines() if line.strip()]
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
            raise RequestRejected(422, f"upload record {n}: {e.errors()[0]['msg']} (records need input and output or outputs)") from None
    if not instances:
        raise RequestRejected(422, "upload has no records")
    upload_id = uuid.uuid4().hex
    folder = uploads_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{upload_id}.tmp"
    tmp.write_text("".join(i.model_dump_json(exclude_none=True) + "\n" for i in instances))
    tmp.replace(folder / f"{upload_id}.jsonl")
    return upload_id, len(instances)


def _inline_data(request: SpecialistRequest, home: Path) -> tuple[list[InlineInstance], list[InlineInstance]]:
    """(evaluation instances, training instances) of inline or uploaded data."""
    data = request.instances if request.instances is not None else read_upload(home, request.upload_id)
    if request.eval_instances is not None:
        return request.eval_instances, data
    return data[: request.held_out], data[request.held_out :]


def candidate_settings(request: SpecialistRequest, pool_size: int) -> list[str]:
    """The generalist settings (`RATIO[:FILTER]`) a request's job trains as candidates."""
    from factory.build import AUTO_CANDIDATES

    generalist = request.generalist
    if generalist == "auto":
        return list(AUTO_CANDIDATES)
    if generalist == "none":
        return ["0"]
    if isinstance(generalist, Ratio):
        return [f"{generalist.ratio:g}"]
    # A count of generalist records, as a ratio of the specialist examples (one candidate: no selection set).
    examples = pool_size if request.instances_per_task == "all" else request.instances_per_task
    return [f"{generalist.count / max(1, examples):g}"]


def validate_request(request: SpecialistRequest, config, home: Path) -> None:
    """Everything checkable before queueing: the data exists and is large enough, the gate is only tightened."""
    from factory.build import selection_size
    from specialist.superni import load_task, resolve_task_file, split_instances, training_pool

    wanted = request.instances_per_task
    if request.superni_task is not None:
        try:
            resolve_task_file(config.task_data, request.superni_task)
        except SpecialistError as e:
            raise RequestRejected(404, str(e)) from None
        task = load_task(config.task_data, request.superni_task)  # a malformed file: SpecialistError, a 422
        held_out, _ = split_instances(task)
        _, trainable = training_pool(task)
    else:
        held_out, trainable = _inline_data(request, home)
    if not held_out:
        raise RequestRejected(422, "no evaluation instances: send more instances, lower held_out or give eval_instances")
    # Several candidates are compared on a selection set that none of them trains on (factory.build).
    selection = selection_size(len(candidate_settings(request, len(trainable))), request.selection_instances)
    left = len(trainable) - selection
    if left < 1 or (wanted != "all" and wanted > left):
        reserved = f" and {selection} kept to choose between candidates (selection_instances)" if selection else ""
        raise RequestRejected(
            422, f"too few instances: {max(0, left)} left for training after {len(held_out)} held out{reserved}, {wanted} requested; "
            "send more instances or ask for fewer" + (", or lower selection_instances" if selection else ""),
        )  # fmt: skip
    job_policy(request, config)  # raises if the overrides loosen the operator's policy


def job_policy(request: SpecialistRequest, config):
    """The operator's gate policy, tightened by the request's overrides (never loosened)."""
    from eval.gate import load_policy

    base = load_policy(config.job_gate_policy)
    o = request.gate
    updates: dict = {}
    for metric, value in o.min_score.items():
        if value < base.min_score.get(metric, 0):
            raise RequestRejected(422, f"gate.min_score.{metric}={value} is below the operator's {base.min_score[metric]}")
        updates.setdefault("min_score", dict(base.min_score))[metric] = value
    for name in ("min_gain_over_base", "min_gain_over_majority", "min_gain_over_champion", "confidence"):
        value, floor = getattr(o, name), getattr(base, name)
        if value is not None:
            if floor is not None and value < floor:
                raise RequestRejected(422, f"gate.{name}={value} is below the operator's {floor}")
            updates[name] = value
    if o.eval_instances is not None:
        if base.eval_instances is not None and o.eval_instances < base.eval_instances:
            raise RequestRejected(422, f"gate.eval_instances={o.eval_instances} is below the operator's {base.eval_instances}")
        updates["eval_instances"] = o.eval_instances
    return base.model_copy(update=updates)


def materialize_task(request: SpecialistRequest, config, job_dir: Path) -> tuple[Path, str, int]:
    """(task-data folder, task name, answered training instances): SuperNI tasks are used in place; inline and
    uploaded data become a task file in the upstream format whose first instances are the evaluation set."""
    from specialist.superni import HELD_OUT_KEY, load_task, training_pool

    if request.superni_task is not None:
        _, trainable = training_pool(load_task(config.task_data, request.superni_task))
        return Path(config.task_data), request.superni_task, len(trainable)
    held_out, trainable = _inline_data(request, job_dir.parent.parent)
    rows = [{"id": f"{request.task}-{n}", "input": i.input, "output": i.references()} for n, i in enumerate([*held_out, *trainable])]
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
