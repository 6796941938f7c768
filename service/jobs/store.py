"""The job table: every specialist request's job, its status, progress and outcome, and beside it each
job's events (every status change is one, written with it) and the checkpoints its training wrote.

The table lives in the service's database (specialist.database: $SPECIALIST_HOME/jobs/jobs.sqlite by default,
PostgreSQL with SPECIALIST_DATABASE_URL), job folders under $SPECIALIST_HOME/jobs/. A restart loses no record:
a job whose process died (killed, out of memory, cut off by a service restart) is queued again and resumes from
its last checkpoint, up to a retry limit (`resume_or_fail`); a cancel still wins. Nothing is half-promoted:
promotion is the job's last, atomic step, and a resumed job finds a version it had registered already.
Everything the service, the executor and the job process know about a job goes through the methods here.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, RowMapping, text

from service.jobs.executor import stop_leftover_runner
from service.jobs.schema import (
    CANCELED,
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
from specialist.database import configured_url, fetch_all, fetch_one, open_database, sqlite_url

INTERRUPTED = "interrupted by a service restart"
REPLICA_ENV = "SPECIALIST_REPLICA_ID"
# Jobs made in the same second, in the order they were made: by their first event (written with the job), as
# neither database orders text ids by insertion.
CREATION_ORDER = "(SELECT MIN(e.id) FROM job_events e WHERE e.job_id = jobs.id)"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class JobStore:
    def __init__(self, home: Path, replica: str | None = None):
        """`replica`: who claims jobs through this store ($SPECIALIST_REPLICA_ID, else this machine and home);
        on a shared database a restart fails only the jobs its own replica was running, so the name must
        survive the replica's restarts (in a container whose hostname changes, set SPECIALIST_REPLICA_ID)."""
        self.root = Path(home) / "jobs"
        self.replica = replica or os.environ.get(REPLICA_ENV) or f"{socket.gethostname()}:{Path(home).resolve()}"
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "jobs.sqlite"  # the embedded default
        self.db = open_database(configured_url() or sqlite_url(self.db_path), "jobs")

    def _connect(self) -> AbstractContextManager[Connection]:
        return self.db.read()

    def _transaction(self) -> AbstractContextManager[Connection]:
        return self.db.write("jobs")

    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def create(self, request: SpecialistRequest) -> str:
        """Queue a job; refuses a task that already has a queued or running job (atomically)."""
        job_id = uuid.uuid4().hex
        with self._transaction() as db:
            busy = fetch_one(
                db,
                "SELECT id FROM jobs WHERE task = :task AND status IN :active",
                task=request.task,
                active=("queued", *RUNNING),
                expanding=("active",),
            )
            if busy is not None:
                raise DuplicateJob(request.task, busy["id"])
            now = _now()
            db.execute(
                text(
                    "INSERT INTO jobs (id, task, status, request, metadata, created_at, updated_at)"
                    " VALUES (:id, :task, 'queued', :request, :metadata, :now, :now)"
                ),
                {
                    "id": job_id,
                    "task": request.task,
                    "request": request.model_dump_json(),
                    "metadata": json.dumps(request.metadata),
                    "now": now,
                },
            )
            _status_event(db, job_id, None, "queued")
        return job_id

    def get(self, job_id: str) -> Job | None:
        with self._connect() as db:
            row = fetch_one(db, "SELECT * FROM jobs WHERE id = :id", id=job_id)
        return None if row is None else _job(row)

    def list(self, limit: int = 100) -> list[JobSummary]:
        with self._connect() as db:
            rows = fetch_all(
                db, f"SELECT * FROM jobs ORDER BY created_at DESC, {CREATION_ORDER} DESC LIMIT :limit", limit=limit
            )
        return [_summary(r) for r in rows]

    def request(self, job_id: str) -> SpecialistRequest:
        with self._connect() as db:
            row = fetch_one(db, "SELECT request FROM jobs WHERE id = :id", id=job_id)
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
        now = _now()
        sets, values = ["updated_at = :now"], {"now": now, "id": job_id}
        if status is not None:
            sets.append("status = :status")
            values["status"] = status
            if status in RUNNING:
                sets.append("started_at = COALESCE(started_at, :now)")
            if status in FINAL:
                sets.append("finished_at = :now")
        for column, value in (("progress", progress), ("result", result)):
            if value is not None:
                sets.append(f"{column} = :{column}")
                values[column] = json.dumps(value)
        if error is not None:
            sets += ["error = :error", "error_code = :error_code"]
            values.update(error=error.message, error_code=error.code)
        if trained_tokens is not None:
            sets.append("trained_tokens = :trained_tokens")
            values["trained_tokens"] = trained_tokens
        with self._transaction() as db:
            row = fetch_one(db, "SELECT status FROM jobs WHERE id = :id", id=job_id)
            if row is None or row["status"] in FINAL:
                return
            db.execute(text(f"UPDATE jobs SET {', '.join(sets)} WHERE id = :id"), values)
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
        with self._transaction() as db:
            _insert_event(db, job_id, level, type, message, data or {})

    def events(self, job_id: str, after: int | None = None, limit: int = 100) -> EventPage | None:
        """The job's events after event `after` (exclusive), oldest first, at most `limit`; None: no such job."""
        with self._connect() as db:
            if fetch_one(db, "SELECT 1 AS found FROM jobs WHERE id = :id", id=job_id) is None:
                return None
            rows = fetch_all(  # one more than asked: is there a next page?
                db,
                "SELECT * FROM job_events WHERE job_id = :id AND id > :after ORDER BY id LIMIT :limit",
                id=job_id,
                after=-1 if after is None else after,
                limit=limit + 1,
            )
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
        with self._transaction() as db:
            db.execute(
                text(
                    "INSERT INTO job_checkpoints (job_id, candidate, step, train_loss, path, kind, created_at)"
                    " VALUES (:job_id, :candidate, :step, :train_loss, :path, :kind, :at)"
                ),
                {
                    "job_id": job_id,
                    "candidate": candidate,
                    "step": step,
                    "train_loss": train_loss,
                    "path": str(path),
                    "kind": kind,
                    "at": _now(),
                },
            )

    def checkpoints(self, job_id: str) -> CheckpointList | None:
        with self._connect() as db:
            if fetch_one(db, "SELECT 1 AS found FROM jobs WHERE id = :id", id=job_id) is None:
                return None
            rows = fetch_all(db, "SELECT * FROM job_checkpoints WHERE job_id = :id ORDER BY id", id=job_id)
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
        with self._transaction() as db:
            row = fetch_one(db, "SELECT status, promoting FROM jobs WHERE id = :id", id=job_id)
            if row is None:
                return None
            if row["status"] == "queued":
                db.execute(
                    text("UPDATE jobs SET status = 'canceled', finished_at = :now, updated_at = :now WHERE id = :id"),
                    {"now": _now(), "id": job_id},
                )
                _status_event(db, job_id, "queued", "canceled")
            elif row["status"] in RUNNING and not row["promoting"]:
                db.execute(
                    text("UPDATE jobs SET cancel_requested = 1, updated_at = :now WHERE id = :id"),
                    {"now": _now(), "id": job_id},
                )
                _insert_event(db, job_id, "warn", "message", "cancel requested", {})
        return self.get(job_id).status

    def claim(self, job_id: str) -> bool:
        """Atomically move a queued job to 'preparing' (False if it was canceled or claimed meanwhile)."""
        with self._transaction() as db:
            claimed = db.execute(
                text(
                    "UPDATE jobs SET status = 'preparing', progress = :progress, updated_at = :now,"
                    " started_at = COALESCE(started_at, :now), claimed_by = :replica, attempts = attempts + 1"
                    " WHERE id = :id AND status = 'queued'"
                ),
                {"progress": json.dumps({"stage": "preparing"}), "now": _now(), "id": job_id, "replica": self.replica},
            ).rowcount
            if claimed == 1:
                _status_event(db, job_id, "queued", "preparing")
            return claimed == 1

    def set_pid(self, job_id: str, pid: int) -> None:
        with self._transaction() as db:
            db.execute(text("UPDATE jobs SET pid = :pid WHERE id = :id"), {"pid": pid, "id": job_id})

    def begin_promotion(self, job_id: str) -> bool:
        """The point of no return: True (and cancels are refused from now on) unless a cancel came first."""
        with self._transaction() as db:
            row = fetch_one(db, "SELECT status, cancel_requested FROM jobs WHERE id = :id", id=job_id)
            ok = row is not None and row["status"] in RUNNING and not row["cancel_requested"]
            if ok:
                db.execute(
                    text("UPDATE jobs SET promoting = 1, updated_at = :now WHERE id = :id"),
                    {"now": _now(), "id": job_id},
                )
            return ok

    def promoting(self, job_id: str) -> bool:
        with self._connect() as db:
            row = fetch_one(db, "SELECT promoting FROM jobs WHERE id = :id", id=job_id)
        return bool(row and row["promoting"])

    def cancel_requested(self, job_id: str) -> bool:
        with self._connect() as db:
            row = fetch_one(db, "SELECT cancel_requested FROM jobs WHERE id = :id", id=job_id)
        return bool(row and row["cancel_requested"])

    def next_queued(self) -> str | None:
        with self._connect() as db:
            row = fetch_one(
                db, f"SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at, {CREATION_ORDER} LIMIT 1"
            )
        return row["id"] if row else None

    def resume_or_fail(self, job_id: str, why: str, retries: int) -> Stage | None:
        """A job whose process died (`why`): queued again to resume from its last checkpoint while it has
        retries left, failed once it has none, canceled if a cancel was asked for (a cancel wins over a resume).
        Returns the status after (None for an unknown job; a job already final is left as it is)."""
        with self._transaction() as db:
            row = fetch_one(
                db, "SELECT status, cancel_requested, promoting, attempts FROM jobs WHERE id = :id", id=job_id
            )
            if row is None or row["status"] in FINAL:
                return None if row is None else row["status"]
            now, attempts = _now(), row["attempts"]
            if row["cancel_requested"] and not row["promoting"]:
                status, error = "canceled", CANCELED
            elif attempts > retries:
                code = "interrupted" if why == INTERRUPTED else "process_exited"
                message = f"{why}; gave up after {attempts} attempts (retry limit {retries})"
                status, error = "failed", JobError(code=code, message=message)
            else:
                db.execute(
                    text(
                        "UPDATE jobs SET status = 'queued', claimed_by = NULL, pid = NULL, updated_at = :now"
                        " WHERE id = :id"
                    ),
                    {"now": now, "id": job_id},
                )
                message = f"{why}: resuming from the last checkpoint (attempt {attempts + 1} of {retries + 1})"
                data = {"reason": why, "attempt": attempts + 1, "of": retries + 1}
                _insert_event(db, job_id, "warn", "message", message, data)
                _status_event(db, job_id, row["status"], "queued")
                return "queued"
            db.execute(
                text(
                    "UPDATE jobs SET status = :status, error = :error, error_code = :code, finished_at = :now,"
                    " updated_at = :now WHERE id = :id"
                ),
                {"status": status, "error": error.message, "code": error.code, "now": now, "id": job_id},
            )
            _status_event(db, job_id, row["status"], status, error)
            return status

    def resume_interrupted(self, retries: int) -> int:
        """At start: jobs that were running when this service stopped resume (`resume_or_fail`); a job process
        that outlived the service (it runs in its own session) is stopped first. Returns how many there were."""
        # On a shared database: this replica's jobs (and those claimed before replicas were recorded); another
        # replica's run on. Embedded (SQLite, one service per home): every running job was this service's.
        mine: dict[str, Any] = {"active": RUNNING}
        owned = "status IN :active"
        if self.db.postgres:
            owned += " AND (claimed_by = :replica OR claimed_by IS NULL)"
            mine["replica"] = self.replica
        with self._connect() as db:
            rows = fetch_all(db, f"SELECT id, pid FROM jobs WHERE {owned}", **mine, expanding=("active",))
        for row in rows:
            if row["pid"] is not None:
                stop_leftover_runner(row["pid"])
            self.resume_or_fail(row["id"], INTERRUPTED, retries)
        return len(rows)


def _insert_event(db: Connection, job_id: str, level: EventLevel, type: EventType, message: str, data: dict) -> None:
    db.execute(
        text(
            "INSERT INTO job_events (job_id, created_at, level, type, message, data)"
            " VALUES (:job_id, :at, :level, :type, :message, :data)"
        ),
        {"job_id": job_id, "at": _now(), "level": level, "type": type, "message": message, "data": json.dumps(data)},
    )


def _status_event(
    db: Connection, job_id: str, previous: str | None, status: str, error: JobError | None = None
) -> None:
    level: EventLevel = "error" if status == "failed" else "warn" if status in ("rejected", "canceled") else "info"
    data: dict[str, Any] = {"status": status, "previous": previous}
    if error is not None:
        data["error"] = error.model_dump()
    _insert_event(db, job_id, level, "message", f"status {status}" + (f": {error.message}" if error else ""), data)


def _error(row: RowMapping) -> JobError | None:
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


def _summary(row: RowMapping) -> JobSummary:
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
        attempts=row["attempts"],
    )


def _job(row: RowMapping) -> Job:
    return Job(**_summary(row).model_dump(), result=json.loads(row["result"]), request=json.loads(row["request"]))
