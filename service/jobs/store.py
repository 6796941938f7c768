"""The job table: every specialist request's job, its status, progress and outcome, in SQLite; and beside it
each job's events (every status change is one, written with it) and the checkpoints its training wrote.

Jobs live under $SPECIALIST_HOME/jobs/ (a restart loses no record; a job cut off by a restart is marked failed, and
nothing is half-promoted because promotion is the job's last, atomic step). Everything the service, the executor
and the job process know about a job goes through the methods here, so another database can stand in behind them.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from service.jobs.executor import stop_leftover_runner
from service.jobs.schema import (
    FINAL,
    RUNNING,
    Checkpoint,
    CheckpointList,
    DuplicateJob,
    EventLevel,
    EventPage,
    EventType,
    Job,
    JobError,
    JobEvent,
    JobSummary,
    SpecialistRequest,
    Stage,
)
from specialist.sqlite import connect, transaction

INTERRUPTED = "interrupted by a service restart"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class JobStore:
    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY, task TEXT NOT NULL, status TEXT NOT NULL, request TEXT NOT NULL,
        progress TEXT NOT NULL DEFAULT '{}', result TEXT NOT NULL DEFAULT '{}', error TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0, promoting INTEGER NOT NULL DEFAULT 0, pid INTEGER,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL, started_at TEXT, finished_at TEXT,
        error_code TEXT, metadata TEXT NOT NULL DEFAULT '{}', trained_tokens INTEGER);
    CREATE TABLE IF NOT EXISTS job_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, created_at TEXT NOT NULL,
        level TEXT NOT NULL, type TEXT NOT NULL, message TEXT NOT NULL, data TEXT NOT NULL DEFAULT '{}');
    CREATE INDEX IF NOT EXISTS job_events_by_job ON job_events (job_id, id);
    CREATE TABLE IF NOT EXISTS job_checkpoints (
        id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, candidate TEXT NOT NULL, step INTEGER NOT NULL,
        train_loss REAL, validation_loss REAL, path TEXT NOT NULL, kind TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS job_checkpoints_by_job ON job_checkpoints (job_id, id);
    """

    _ADDED_COLUMNS = {
        "promoting": "INTEGER NOT NULL DEFAULT 0",
        "pid": "INTEGER",
        "error_code": "TEXT",
        "metadata": "TEXT NOT NULL DEFAULT '{}'",
        "trained_tokens": "INTEGER",
    }

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

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
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
                "INSERT INTO jobs (id, task, status, request, metadata, created_at, updated_at)"
                " VALUES (?, ?, 'queued', ?, ?, ?, ?)",
                (job_id, request.task, request.model_dump_json(), json.dumps(request.metadata), _now(), _now()),
            )
            _status_event(db, job_id, None, "queued")
            db.execute("COMMIT")
        return job_id

    def get(self, job_id: str) -> Job | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _job(row)

    def list(self, limit: int = 100) -> list[JobSummary]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)).fetchall()
        return [_summary(r) for r in rows]

    def request(self, job_id: str) -> SpecialistRequest:
        with self._connect() as db:
            row = db.execute("SELECT request FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return SpecialistRequest.model_validate_json(row["request"])

    def update(
        self,
        job_id: str,
        status: Stage | None = None,
        progress: dict[str, Any] | None = None,
        result: dict[str, Any] | None = None,
        error: JobError | None = None,
        trained_tokens: int | None = None,
    ) -> None:
        """Record what is given; a change of status is also an event. A final status is never overwritten
        (a late update from a dying process must not revive a job)."""
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
            sets += ["error = ?", "error_code = ?"]
            values += [error.message, error.code]
        if trained_tokens is not None:
            sets.append("trained_tokens = ?")
            values.append(trained_tokens)
        with transaction(self.db_path) as db:
            row = db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["status"] in FINAL:
                return
            db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", (*values, job_id))
            if status is not None and status != row["status"]:
                _status_event(db, job_id, row["status"], status, error)

    def add_event(
        self,
        job_id: str,
        message: str,
        data: dict[str, Any] | None = None,
        level: EventLevel = "info",
        type: EventType = "message",
    ) -> None:
        with self._connect() as db:
            _insert_event(db, job_id, level, type, message, data or {})

    def events(self, job_id: str, after: int | None = None, limit: int = 100) -> EventPage | None:
        """The job's events after event `after` (exclusive), oldest first, at most `limit`; None: no such job."""
        with self._connect() as db:
            if db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
                return None
            rows = db.execute(
                "SELECT * FROM job_events WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?",
                (job_id, -1 if after is None else after, limit + 1),  # one more: is there a next page?
            ).fetchall()
        events = [
            JobEvent(
                id=r["id"],
                created_at=r["created_at"],
                level=r["level"],
                type=r["type"],
                message=r["message"],
                data=json.loads(r["data"]),
            )
            for r in rows[:limit]
        ]
        return EventPage(data=events, has_more=len(rows) > limit)

    def add_checkpoint(
        self, job_id: str, candidate: str, step: int, train_loss: float | None, path: Path, kind: str
    ) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO job_checkpoints (job_id, candidate, step, train_loss, path, kind, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job_id, candidate, step, train_loss, str(path), kind, _now()),
            )

    def checkpoints(self, job_id: str) -> CheckpointList | None:
        with self._connect() as db:
            if db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
                return None
            rows = db.execute("SELECT * FROM job_checkpoints WHERE job_id = ? ORDER BY id", (job_id,)).fetchall()
        return CheckpointList(
            data=[
                Checkpoint(
                    step=r["step"],
                    train_loss=r["train_loss"],
                    validation_loss=r["validation_loss"],
                    path=r["path"],
                    candidate=r["candidate"],
                    kind=r["kind"],
                    created_at=r["created_at"],
                )
                for r in rows
            ]
        )

    def request_cancel(self, job_id: str) -> Stage | None:
        """Cancel a queued job at once, or flag a running one for the executor; returns the status after.
        A job already promoting (registering its adapter) finishes: the cancel came too late."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT status, promoting FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                db.execute("ROLLBACK")
                return None
            if row["status"] == "queued":
                db.execute(
                    "UPDATE jobs SET status = 'canceled', finished_at = ?, updated_at = ? WHERE id = ?",
                    (_now(), _now(), job_id),
                )
                _status_event(db, job_id, "queued", "canceled")
            elif row["status"] in RUNNING and not row["promoting"]:
                db.execute("UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ?", (_now(), job_id))
                _insert_event(db, job_id, "warn", "message", "cancel requested", {})
            db.execute("COMMIT")
        return self.get(job_id).status

    def claim(self, job_id: str) -> bool:
        """Atomically move a queued job to 'preparing' (False if it was canceled in the meantime)."""
        with transaction(self.db_path) as db:
            cur = db.execute(
                "UPDATE jobs SET status = 'preparing', progress = ?, started_at = ?, updated_at = ? WHERE id = ? AND status = 'queued'",
                (json.dumps({"stage": "preparing"}), _now(), _now(), job_id),
            )
            if cur.rowcount == 1:
                _status_event(db, job_id, "queued", "preparing")
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
            row = db.execute(
                "SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at, rowid LIMIT 1"
            ).fetchone()
        return row["id"] if row else None

    def fail_interrupted(self) -> int:
        """At start: jobs that were running when the service stopped are failed, never left half-done; a job
        process that outlived the service (it runs in its own session) is stopped first."""
        with self._connect() as db:
            rows = db.execute(
                f"SELECT pid FROM jobs WHERE pid IS NOT NULL AND status IN ({','.join('?' * len(RUNNING))})", RUNNING
            ).fetchall()
        for row in rows:
            stop_leftover_runner(row["pid"])
        error = JobError(code="interrupted", message=INTERRUPTED)
        with transaction(self.db_path) as db:
            running = db.execute(
                f"SELECT id, status FROM jobs WHERE status IN ({','.join('?' * len(RUNNING))})", RUNNING
            ).fetchall()
            for row in running:
                db.execute(
                    "UPDATE jobs SET status = 'failed', error = ?, error_code = ?, finished_at = ?, updated_at = ? "
                    "WHERE id = ?",
                    (error.message, error.code, _now(), _now(), row["id"]),
                )
                _status_event(db, row["id"], row["status"], "failed", error)
            return len(running)


def _insert_event(
    db: sqlite3.Connection, job_id: str, level: EventLevel, type: EventType, message: str, data: dict
) -> None:
    db.execute(
        "INSERT INTO job_events (job_id, created_at, level, type, message, data) VALUES (?, ?, ?, ?, ?, ?)",
        (job_id, _now(), level, type, message, json.dumps(data)),
    )


def _status_event(
    db: sqlite3.Connection, job_id: str, previous: str | None, status: str, error: JobError | None = None
) -> None:
    level: EventLevel = "error" if status == "failed" else "warn" if status in ("rejected", "canceled") else "info"
    data: dict[str, Any] = {"status": status, "previous": previous}
    if error is not None:
        data["error"] = error.model_dump()
    _insert_event(db, job_id, level, "message", f"status {status}" + (f": {error.message}" if error else ""), data)


def _error(row: sqlite3.Row) -> JobError | None:
    if row["error"] is None:
        return None
    return JobError(code=row["error_code"] or _code_of_old_error(row["status"], row["error"]), message=row["error"])


def _code_of_old_error(status: str, message: str) -> str:
    """A job recorded by an earlier version has a message but no code: the code its outcome implies."""
    if status == "rejected":
        return "gate_rejected"
    if status == "canceled":
        return "canceled"
    if message == INTERRUPTED:
        return "interrupted"
    if message.startswith("exceeded the wall-time budget"):
        return "wall_time_exceeded"
    if message.startswith("the job process exited"):
        return "process_exited"
    return "internal"


def _summary(row: sqlite3.Row) -> JobSummary:
    return JobSummary(
        job_id=row["id"],
        task=row["task"],
        status=row["status"],
        progress=json.loads(row["progress"]),
        error=_error(row),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        metadata=json.loads(row["metadata"]),
        trained_tokens=row["trained_tokens"],
    )


def _job(row: sqlite3.Row) -> Job:
    return Job(**_summary(row).model_dump(), result=json.loads(row["result"]), request=json.loads(row["request"]))
