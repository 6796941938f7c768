"""A real `specialist serve` on 127.0.0.1, for the tools that need one: start, wait until ready, stop, crash.

The one launcher of the end-to-end test, the benchmarks, the quickstart and the reliability suite. The server
runs in its own session (so SIGKILL to its processes is a crash of the whole service, and a training job, which
runs in a session of its own, outlives it exactly as it would in production). Its output goes to a log file or
nowhere; an unread pipe would fill up and block it.

    with LiveServer(home, token, ["--num-threads", "2"], log_dir=work) as server:
        httpx.post(f"{server.url}/admin/reload", headers=server.admin)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from service.jobs.executor import is_runner_cmdline

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(
    url: str, proc: subprocess.Popen, path: str = "/readyz", timeout: float = 300, log: Path | None = None
) -> None:
    """Poll `url + path` until it answers 200; fail early if the server process exits. Errors end with the tail
    of the server's `log`, when there is one."""
    import httpx

    tail = lambda: f": {log.read_text()[-3000:]}" if log is not None and log.exists() else ""  # noqa: E731
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}{tail()}")
        try:
            if httpx.get(url + path, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout}s{tail()}")


class LiveServer:
    """`specialist serve --host 127.0.0.1 --port PORT *serve_args` with SPECIALIST_HOME=`home` and the admin
    `token`, from the checkout (cwd `REPO`), environment `env` over this process's.

    Output goes to `log` (one file, rewritten at each start), or to `log_dir`/serve-N.log (one per start: a
    restart keeps the earlier log), or nowhere when neither is given."""

    def __init__(
        self,
        home: Path,
        token: str,
        serve_args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        log_dir: Path | None = None,
        port: int | None = None,
        ready_timeout: float = 600,
        stop_timeout: float = 60,
    ):
        if log is not None and log_dir is not None:
            raise ValueError("give log or log_dir, not both")
        self.home, self.token = Path(home), token
        self.serve_args = list(serve_args)
        self.extra_env = dict(env or {})
        self.log = Path(log) if log is not None else None
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.ready_timeout, self.stop_timeout = ready_timeout, stop_timeout
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.logs: list[Path] = []

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def env(self) -> dict[str, str]:
        """The server's environment (also right for a CLI command on the same home)."""
        return dict(os.environ, SPECIALIST_HOME=str(self.home), SPECIALIST_ADMIN_TOKEN=self.token, **self.extra_env)

    def start(self, timeout: float | None = None) -> float:
        """Start and wait until /readyz answers 200 (`timeout` seconds at most, default `ready_timeout`);
        returns the seconds it took."""
        if _port_open(self.port):  # an old server still answering would pass for this one
            raise RuntimeError(f"port {self.port} is still in use: a previous server is still running")
        self.starts += 1
        log = self.log or (self.log_dir / f"serve-{self.starts}.log" if self.log_dir is not None else None)
        if log is not None:
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
        out = open(log, "w") if log is not None else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, env=self.env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            if log is not None:
                out.close()  # the server holds its own copy of the file
        wait_ready(self.url, self.proc, timeout=self.ready_timeout if timeout is None else timeout, log=log)
        return time.perf_counter() - started

    def __enter__(self) -> LiveServer:
        try:
            self.start()
        except BaseException:
            self.stop()  # a server that never became ready is stopped all the same
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

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

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM through the main PID (as an operator would) and wait; SIGKILL to every process left if it
        hangs past `timeout` seconds (default `stop_timeout`)."""
        if self.proc is None:
            return None
        procs = self.processes()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.stop_timeout if timeout is None else timeout)
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
