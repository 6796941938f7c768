"""A real `specialist serve` on 127.0.0.1 for the long part: start, stop, crash, restart, and look inside.

The server runs in its own session (so SIGKILL to its process group is a crash of the whole service, and a
training job, which runs in a session of its own, outlives it exactly as it would in production). Its output
goes to a log file; an unread pipe would fill up and block it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from benchmarks.common import free_port, wait_ready
from service.jobs.executor import is_runner_cmdline

REPO = Path(__file__).resolve().parent.parent


class LiveServer:
    def __init__(self, home: Path, log_dir: Path, token: str, serve_args: list[str] = ()):
        self.home, self.log_dir, self.token = Path(home), Path(log_dir), token
        self.serve_args = list(serve_args)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.logs: list[Path] = []

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def env(self) -> dict[str, str]:
        env = dict(
            os.environ,
            SPECIALIST_HOME=str(self.home),
            SPECIALIST_ADMIN_TOKEN=self.token,
            HF_HUB_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
            BENTOML_DO_NOT_TRACK="True",
        )
        return env

    def start(self, timeout: float = 600) -> float:
        """Start and wait until /readyz answers 200; returns the seconds it took."""
        if _port_open(self.port):  # an old server still answering would pass for this one
            raise RuntimeError(f"port {self.port} is still in use: a previous server is still running")
        self.starts += 1
        log = self.log_dir / f"serve-{self.starts}.log"
        self.logs.append(log)
        cmd = [
            sys.executable,
            "-m",
            "cli.main",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self.serve_args,
        ]
        started = time.perf_counter()
        with open(log, "w") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, env=self.env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_ready(self.url, self.proc, timeout=timeout, log=log)
        return time.perf_counter() - started

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def processes(self) -> list[psutil.Process]:
        """The service's own processes (main and workers), not the training jobs (they run in their own session)."""
        if not self.alive():
            return []
        try:
            main = psutil.Process(self.proc.pid)
            return [main, *(p for p in main.children(recursive=True) if not is_job_runner(p))]
        except psutil.NoSuchProcess:
            return []

    def snapshot(self) -> dict:
        """RSS, open files and threads of the service's processes, and the training jobs running now."""
        procs, rss, fds, threads = self.processes(), 0, 0, 0
        for p in procs:
            try:
                rss += p.memory_info().rss
                fds += p.num_fds()
                threads += p.num_threads()
            except psutil.NoSuchProcess:
                pass
        return {
            "processes": len(procs),
            "pids": sorted(p.pid for p in procs),
            "rss_mb": round(rss / 2**20, 1),
            "fds": fds,
            "threads": threads,
            "job_runners": len(job_runners(self.home)),
        }

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM through the main PID (as an operator would); SIGKILL to every process left if it hangs."""
        if self.proc is None:
            return None
        procs = self.processes()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill(procs)
                self.proc.wait()
        self._kill([p for p in procs if p.is_running()], grace=10)  # a worker must not outlive its server
        return self.proc.returncode

    def crash(self) -> None:
        """SIGKILL every process of the service at once (main and workers; not a training job, which runs in
        its own session): no shutdown hook runs. (Killing only the main PID is not enough: BentoML's worker
        runs in its own process group and would go on serving as an orphan.)"""
        self._kill(self.processes())
        self.proc.wait(timeout=30)
        deadline = time.time() + 30  # the port is free once every worker is gone
        while time.time() < deadline and _port_open(self.port):
            time.sleep(0.1)

    @staticmethod
    def _kill(procs: list[psutil.Process], grace: float = 0) -> None:
        if grace:
            _, procs = psutil.wait_procs(procs, timeout=grace)
        for p in procs:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=30)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def is_job_runner(p: psutil.Process) -> bool:
    try:
        return is_runner_cmdline("\0".join(p.cmdline()).encode())  # the executor's own check (both module names)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def job_runners(home: Path, job_id: str | None = None) -> list[psutil.Process]:
    """Training-job processes working on `home` (another service on the machine has its own)."""
    found = []
    for p in psutil.process_iter():
        if is_job_runner(p):
            try:
                if p.environ().get("SPECIALIST_HOME") == str(home) and (job_id is None or job_id in p.cmdline()):
                    found.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
    return found
