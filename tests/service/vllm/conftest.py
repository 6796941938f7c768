"""Backend vllm against real engines (vLLM's CPU build from `make vllm`) on the default model: head_dim 16 of the
tiny test model has no vLLM CPU attention kernel, so these run the real SmolLM2 with random adapters.

One service (and its engine) is shared by the module's tests; starting one takes ~50 s on 2 cores. Without
.venv-vllm they skip with the reason, except under CI=true, where a missing engine is a failure.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from service.live import REPO, LiveServer
from service.vllm.process import STRUCTURED_OUTPUTS
from tests.conftest import SHARED_TASKS

VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
TOKEN = "vllm-admin-token"
ARTIFACT_TOKEN = "vllm-artifact-token"
MAX_NEW = 8
SERVE_ARGS = ["--backend", "vllm", "--num-threads", "2", "--max-new-tokens-cap", "32", "--default-max-new-tokens", "8"]


def _has_vllm() -> str | None:
    if not SHARED_TASKS.is_dir():
        return "../shared/data is not beside this checkout"
    if not VLLM_PYTHON.exists():
        return "no .venv-vllm: run `make vllm`"
    return None


def require_vllm() -> None:
    reason = _has_vllm()
    if reason and os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the vLLM engine is missing: {reason}")
    if reason:
        pytest.skip(reason)


# Two task shapes (a one-word label, a short answer), each with a second version: enough to tell adapters
# apart and to swap them, at a fraction of the four-task reliability home's cost on vLLM's CPU build.
TASKS = {"sst2": "task363_sst2_polarity_classification", "obqa": "task1399_obqa_answer_generation"}


@pytest.fixture(scope="package")
def vllm_home(tmp_path_factory) -> Path:
    """Two routed tasks on the default model (v1 routed, v2 registered), each adapter answering its own way."""
    require_vllm()
    from specialist.adapters import Registry
    from specialist.testing import random_adapters

    work = tmp_path_factory.mktemp("vllm")
    dirs = random_adapters(work / "adapters", [*TASKS.values(), *TASKS.values()], scale=1.0)
    registry = Registry(work / "home")
    for i, task in enumerate(TASKS):
        registry.add(dirs[i], task, skip_gate=True, actor="test")
        registry.add(dirs[len(TASKS) + i], task, skip_gate=True, actor="test", promote=False)
    return work / "home"


@pytest.fixture(scope="module")
def vllm_server(vllm_home, tmp_path_factory):
    """The service with its own engine (module scope: stopped before the next module starts engines of its own)."""
    logs = tmp_path_factory.mktemp("serve-logs")
    server = LiveServer(
        vllm_home, TOKEN, SERVE_ARGS, env={"SPECIALIST_ARTIFACT_TOKEN": ARTIFACT_TOKEN}, log_dir=logs, ready_timeout=420
    )
    with server:
        yield server


@pytest.fixture(scope="module")
def fingerprints(vllm_server):
    """Every adapter's own answers to each task's inputs (reliability.traffic), for telling a wrong adapter's."""
    from eval.benchmarks import task_benchmark
    from reliability.home import make_fingerprints
    from service.router import task_prompt
    from specialist.adapters import Registry
    from specialist.paths import default_task_data

    inputs = {t: [i.input for i in task_benchmark(default_task_data(), s, limit=1).instances] for t, s in TASKS.items()}
    registry = Registry(vllm_server.home)
    prompts = {task: task_prompt(registry.version(task, 1).path, task) for task in TASKS}
    return inputs, make_fingerprints(vllm_server, inputs, prompts, MAX_NEW)


def engine_url(home: Path) -> str:
    """The local engine's URL, from the command line its log records (the port is picked at each start)."""
    log = (home / "engines" / "vllm-engine.log").read_text()
    return "http://127.0.0.1:" + re.findall(r"--port (\d+)", log)[-1]


def engine_pids(server: LiveServer) -> list[int]:
    return [p.pid for p in server.processes() if "vllm.entrypoints.openai.api_server" in " ".join(_cmdline(p))]


def _cmdline(process) -> list[str]:
    try:
        return process.cmdline()
    except Exception:  # noqa: BLE001 - gone meanwhile
        return []


def start_engine(port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    """A vLLM engine as an operator runs one on another machine: its own OpenAI server, our resolver plugin."""
    from specialist.base_models import prepared_default

    command = [
        str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(prepared_default().path), "--served-model-name", "smollm2-135m-instruct",
        "--host", "127.0.0.1", "--port", str(port), "--enable-lora", "--max-loras", "8", "--max-cpu-loras", "32",
        "--max-lora-rank", "64", "--max-model-len", "1536", "--dtype", "float32",
        "--structured-outputs-config", STRUCTURED_OUTPUTS,
    ]  # fmt: skip
    environment = dict(os.environ, OMP_NUM_THREADS="1", VLLM_CPU_KVCACHE_SPACE="1", **env)
    environment["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    with open(log, "wb") as out:
        return subprocess.Popen(command, env=environment, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
