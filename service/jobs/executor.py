"""Running queued jobs: the `Executor` the service depends on, and `LocalExecutor`, one job process at a time.

An executor takes queued jobs from the `JobStore` itself (the service only queues them there) and enforces what
the store asks of a running job: a cancel, the wall-time budget, and that a job registering its adapter finishes.
`LocalExecutor` runs each job in its own process (`python -m service.jobs.runner ID`, its own session), so
training never blocks the serving event loop and a cancel can stop it at once.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from service.jobs.schema import CANCELED, FINAL, JobError
from specialist.allocator import jemalloc_env

if TYPE_CHECKING:
    from service.jobs.store import JobStore

RUNNER_MODULE = "service.jobs.runner"
# A runner started by an earlier version, under its old module name, is one of ours too (see stop_leftover_runner).
RUNNER_MODULES = (RUNNER_MODULE, "service.job_runner")


class Executor(Protocol):
    """What the service needs of whatever runs its jobs (a thread here; a cluster scheduler can stand in)."""

    @property
    def current(self) -> object | None:
        """The job running now, None when idle: while a job trains, serving gives it `job_threads` cores."""

    def close(self) -> None:
        """Stop taking jobs and stop the running one (the next start resumes it)."""


class LocalExecutor:
    """Runs queued jobs one at a time, each in its own process; enforces cancel and the wall-time budget, and
    queues a job whose process died to resume from its checkpoint (up to `retries` times)."""

    def __init__(
        self,
        store: JobStore,
        home: Path,
        env: dict[str, str] | None = None,
        poll_seconds: float = 0.5,
        retries: int = 2,
    ):
        self.store, self.home, self.poll, self.retries = store, Path(home), poll_seconds, retries
        # Runners train: under jemalloc only when SPECIALIST_ALLOCATOR=jemalloc asks for it (specialist.allocator).
        self.env = jemalloc_env(dict(os.environ if env is None else env, SPECIALIST_HOME=str(self.home)))
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
                    error = JobError(code="internal", message=f"worker error: {type(e).__name__}: {e}")
                    self.store.update(job_id, status="failed", error=error)

    def _execute(self, job_id: str) -> None:
        budget = self.store.request(job_id).budget.max_wall_seconds
        log = open(self.store.job_dir(job_id).with_suffix(".log"), "ab")
        self.current = proc = subprocess.Popen(
            [sys.executable, "-m", RUNNER_MODULE, job_id],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.store.set_pid(job_id, proc.pid)
        started = time.time()
        reason: JobError | None = None
        while proc.poll() is None:
            if self._stop.wait(self.poll):
                reason = None  # service shutting down: the restart resumes the job
                break
            if self.store.promoting(job_id):
                continue  # registering its adapter: let it finish (cancels and the budget no longer apply)
            if self.store.cancel_requested(job_id):
                reason = CANCELED
            elif budget is not None and time.time() - started > budget:
                reason = JobError(code="wall_time_exceeded", message=f"exceeded the wall-time budget of {budget:g} s")
            if reason is not None:
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
        if reason is not None:
            self.store.update(job_id, status="canceled" if reason.code == "canceled" else "failed", error=reason)
        elif not self._stop.is_set() and self.store.get(job_id).status not in FINAL:
            # Died without an outcome (killed, out of memory): the build resumes from its last checkpoint.
            why = f"the job process exited with code {proc.returncode} (see {log.name})"
            self.store.resume_or_fail(job_id, why, self.retries)


def is_runner_cmdline(cmdline: bytes) -> bool:
    """Whether a /proc/PID/cmdline is a job runner's, under its current or its earlier module name."""
    return any(module.encode() in cmdline for module in RUNNER_MODULES)


def stop_leftover_runner(pid: int) -> None:
    """SIGTERM a leftover job runner's process group, only if that pid still is a job runner."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if is_runner_cmdline(cmdline):
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
