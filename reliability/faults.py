"""The fault matrix against the live server: promotions under load, a killed training job, a corrupt adapter
pushed with --skip-gate, a crash and restart of the whole service, an unwritable registry.

Order matters only where a scenario leaves state behind: the corrupt-adapter fault leaves a refused newest
champion, which the restart fault then checks is still refused (and the previous champion still served).
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import requests

from reliability.badfiles import ADAPTER_DEFECTS
from reliability.home import SWAPPED, predict_requests, routes_snapshot
from reliability.results.faults import (
    CliAdd,
    CorruptSkipGateResult,
    DefectOutcome,
    Health,
    KillRestartResult,
    KillTrainingResult,
    NotMeasured,
    PromotionResult,
    RegistryAttempt,
    UnwritableRegistryResult,
)
from reliability.traffic import Fingerprints, Traffic, predict
from service.client import error_message
from service.live import REPO, LiveServer, job_runners

JOB_TASK = "task363_sst2_polarity_classification"


# -- faults ---------------------------------------------------------------------------------------------------


def fault_promotion_during_load(
    server: LiveServer, inputs: dict, fp: Fingerprints, clients: int, seconds: float, max_new: int
) -> PromotionResult:
    """Promotions and rollbacks of two tasks, every ~1.5 s, under closed-loop load on all four."""
    traffic = Traffic(server.url, predict_requests(inputs, max_new), clients, None, fp, seed=2).start()
    swaps, swap_seconds, stop_at = [], [], time.time() + seconds
    tasks = list(SWAPPED)
    while time.time() < stop_at:
        for action in ("promote", "rollback"):
            for task in tasks:
                started = time.perf_counter()
                if action == "promote":
                    r = requests.post(
                        f"{server.url}/admin/promote",
                        json={"task": task, "version": 2},
                        headers=server.admin,
                        timeout=300,
                    )
                else:
                    r = requests.post(
                        f"{server.url}/admin/rollback", json={"task": task}, headers=server.admin, timeout=300
                    )
                swap_seconds.append(time.perf_counter() - started)
                swaps.append(r.status_code)
                time.sleep(1.5)
    traffic.stop()
    s = traffic.summary()
    final = {t: v for t, v in routes_snapshot(server.home)["routes"].items()}
    return PromotionResult(
        requests=s.requests,
        failed_requests=s.http_errors + s.transport_errors,
        wrong_adapter=s.wrong_adapter,
        drift=s.drift,
        judged=s.judged,
        swaps=len(swaps),
        swaps_failed=sum(st != 200 for st in swaps),
        swap_p50_s=round(sorted(swap_seconds)[len(swap_seconds) // 2], 3) if swap_seconds else None,
        swap_max_s=round(max(swap_seconds), 3) if swap_seconds else None,
        final_routes=final,
        errors=s.http_error_examples,
        p50_s=s.p50_s,
        p99_s=s.p99_s,
    )


# Long enough to be killed mid-training after a checkpoint (the service runs with --job-checkpoint-every 5).
JOB_STEPS = 40
FINAL = ("promoted", "rejected", "failed", "canceled")


def _submit_job(server: LiveServer, task: str, max_steps: int) -> str:
    body = {
        "task": task,
        "superni_task": JOB_TASK,
        "instances_per_task": 16,
        "generalist": "none",
        "budget": {"max_steps": max_steps},
        "gate": {"eval_instances": 8},
    }
    r = requests.post(f"{server.url}/specialists", json=body, headers=server.admin, timeout=60)
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


def _job(server: LiveServer, job_id: str) -> dict:
    return requests.get(f"{server.url}/specialists/{job_id}", headers=server.admin, timeout=60).json()


def _wait_checkpoint(server: LiveServer, job_id: str, timeout: float) -> int | None:
    """The step of the job's first resumable checkpoint, once it has one (None: none within `timeout`)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = requests.get(f"{server.url}/specialists/{job_id}/checkpoints", headers=server.admin, timeout=60)
        steps = [c["step"] for c in r.json()["data"] if c["kind"] == "resumable"]
        if steps:
            return steps[0]
        time.sleep(0.5)
    return None


def _wait_runners_gone(server: LiveServer, job_id: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while job_runners(server.home, job_id) and time.time() < deadline:
        time.sleep(0.5)


def _versions_added_by(server: LiveServer, job_id: str) -> int:
    """How many adapter versions the job registered (1 for a job promoted once, however often it resumed)."""
    from specialist.adapters import Registry

    return sum(h["action"] == "add" and h["actor"] == f"job:{job_id}" for h in Registry(server.home).history())


def _wait_job(server: LiveServer, job_id: str, statuses: tuple[str, ...], timeout: float) -> dict:
    deadline = time.time() + timeout
    job = _job(server, job_id)
    while job["status"] not in statuses and time.time() < deadline:
        time.sleep(1)
        job = _job(server, job_id)
    return job


def _healthy(server: LiveServer, inputs: dict, fp: Fingerprints, max_new: int) -> Health:
    started = time.perf_counter()
    try:  # a probe's timeout, as an orchestrator would use
        ready = requests.get(f"{server.url}/readyz", timeout=10).status_code == 200
    except requests.RequestException:
        ready = False
    ready_s = round(time.perf_counter() - started, 2)
    verdicts = Counter()
    with requests.Session() as s:
        for task, texts in inputs.items():
            r = predict(s, server.url, task, texts[0], max_new)
            verdicts[
                fp.judge(task, r.json()["adapter_version"], texts[0], r.json()["output"])
                if r.status_code == 200
                else f"http {r.status_code}"
            ] += 1
    return Health(
        ready=ready, readyz_s=ready_s, answers=dict(verdicts), healthy=ready and set(verdicts) <= {"ok", "drift"}
    )


def fault_kill_training(server: LiveServer, inputs: dict, fp: Fingerprints, max_new: int) -> KillTrainingResult:
    """SIGKILL the training process of a running job once it has a checkpoint: the job resumes from it and is
    promoted once; the other routes are untouched, the service serves."""
    before = routes_snapshot(server.home)["routes"]
    job_id = _submit_job(server, "killed-job", max_steps=JOB_STEPS)
    checkpoint = _wait_checkpoint(server, job_id, 600)
    runners = job_runners(server.home, job_id)
    killed = None
    if checkpoint is not None and runners:
        killed = runners[0].pid
        os.kill(killed, signal.SIGKILL)
    job = _wait_job(server, job_id, FINAL, 900)
    time.sleep(1)
    after = routes_snapshot(server.home)["routes"]
    return KillTrainingResult(  # its `passed` is judged from these figures
        killed_pid=killed,
        killed_after_checkpoint_step=checkpoint,
        status=job["status"],
        error=error_message(job),  # the message of the job's {code, message}
        attempts=job["attempts"],
        versions_added=_versions_added_by(server, job_id),
        other_routes_unchanged={t: v for t, v in after.items() if t in before} == before,
        runners_left=len(job_runners(server.home, job_id)),
        **_healthy(server, inputs, fp, max_new).model_dump(),
    )


def fault_corrupt_skip_gate(
    server: LiveServer, made: dict, inputs: dict, fp: Fingerprints, work: Path, max_new: int
) -> CorruptSkipGateResult:
    """An operator registers a corrupt adapter with --skip-gate (promoted at once) while clients use that task."""
    task = "headline"
    results = {}
    for defect in ("wrong-dims", "other-base-manifest"):
        build, _ = ADAPTER_DEFECTS[defect]
        bad = build(made[task][1], work / f"corrupt-{defect}")
        tasks_inputs = {task: inputs[task]}
        traffic = Traffic(server.url, predict_requests(tasks_inputs, max_new), 4, None, fp, seed=3).start()
        time.sleep(2)
        cli = subprocess.run(
            [sys.executable, "-m", "cli.main", "registry", "add", str(bad), "--task", task, "--skip-gate"],
            cwd=REPO,
            env=server.env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        added = re.search(r" v(\d+):", cli.stdout)
        deadline, refused = time.time() + 120, None
        while added and time.time() < deadline and not refused:  # the refusal of this version, not an earlier one
            refused = requests.get(f"{server.url}/tasks", timeout=60).json()["refused"].get(task)
            refused = refused if refused and refused.startswith(f"v{added.group(1)}:") else None
            time.sleep(0.5)
        time.sleep(3)
        traffic.stop()
        s = traffic.summary()
        served = {t["task"]: t["version"] for t in requests.get(f"{server.url}/tasks", timeout=60).json()["tasks"]}
        results[defect] = DefectOutcome(  # its `passed` is judged from these figures
            registered=cli.returncode == 0,
            version=int(added.group(1)) if added else None,
            refused=refused,
            served_version=served.get(task),
            requests=s.requests,
            failed_requests=s.http_errors + s.transport_errors,
            wrong_adapter=s.wrong_adapter,
            drift=s.drift,
            ready=requests.get(f"{server.url}/readyz", timeout=60).status_code == 200,
        )
    return CorruptSkipGateResult(results)


def fault_kill_restart(
    server: LiveServer, inputs: dict, fp: Fingerprints, clients: int, seconds: float, max_new: int
) -> KillRestartResult:
    """SIGKILL the whole service while a job trains (past its first checkpoint) and clients are sending; start
    it again on the same port: the job resumes and is promoted once."""
    before = routes_snapshot(server.home)["routes"]
    served_before = {t["task"]: t["version"] for t in requests.get(f"{server.url}/tasks", timeout=60).json()["tasks"]}
    job_id = _submit_job(server, "restart-job", max_steps=JOB_STEPS)
    _wait_checkpoint(server, job_id, 600)
    job = _job(server, job_id)
    traffic = Traffic(server.url, predict_requests(inputs, max_new), clients, None, fp, seed=4, timeout=120).start()
    time.sleep(seconds / 2)
    down = time.time()
    server.crash()
    runner_survived = len(job_runners(server.home, job_id)) > 0  # it runs in its own session, as in production
    restart_seconds = server.start()
    up = time.time()
    time.sleep(seconds / 2)
    traffic.stop()
    time.sleep(2)
    s = traffic.summary()
    after_job = _job(server, job_id)
    tasks_after = requests.get(f"{server.url}/tasks", timeout=60).json()
    served_after = {t["task"]: t["version"] for t in tasks_after["tasks"] if t["task"] in served_before}
    refused_after = tasks_after["refused"]
    routes_after = routes_snapshot(server.home)["routes"]
    final_job = _wait_job(server, job_id, FINAL, 900)
    _wait_runners_gone(server, job_id, 30)  # its runner writes the final status as its last act, then exits
    return KillRestartResult(
        job_status_before=job["status"],
        job_status_after=after_job["status"],
        job_error_after=error_message(after_job),
        job_final_status=final_job["status"],
        job_attempts=final_job["attempts"],
        job_versions_added=_versions_added_by(server, job_id),
        job_runner_outlived_the_crash=runner_survived,
        job_runners_left=len(job_runners(server.home, job_id)),
        gap_s=round(up - down, 1),
        restart_to_ready_s=round(restart_seconds, 1),
        routes_intact={t: v for t, v in routes_after.items() if t in before} == before,
        served_before=served_before,
        served_after=served_after,
        refused_after=refused_after,
        requests=s.requests,
        transport_errors=s.transport_errors,
        transport_errors_by_type=s.transport_errors_by_type,
        http_errors=s.http_errors,
        http_error_examples=s.http_error_examples,
        wrong_adapter=s.wrong_adapter,
        drift=s.drift,
        judged=s.judged,
    )


def _read_only(path: Path):
    """A context that makes `path` read-only even for root (a read-only bind mount), or None if impossible."""
    import contextlib

    @contextlib.contextmanager
    def bind_ro():
        subprocess.run(["mount", "--bind", str(path), str(path)], check=True, capture_output=True)
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True, capture_output=True)
            yield "read-only bind mount"
        finally:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)

    @contextlib.contextmanager
    def chmod_ro():
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")]}
        try:
            for p in modes:
                p.chmod(0o555 if p.is_dir() else 0o444)
            yield "permissions (a-w)"
        finally:
            for p, mode in modes.items():
                p.chmod(mode)

    if os.geteuid() != 0:
        return chmod_ro()
    if (
        shutil.which("mount")
        and subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True).returncode == 0
    ):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
        return bind_ro()
    return None


def _cli_add(server: LiveServer, adapter: Path, task: str, fsize: int | None = None) -> CliAdd:
    def limit():
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    cli = subprocess.run(
        [sys.executable, "-m", "cli.main", "registry", "add", str(adapter), "--task", task, "--skip-gate"],
        cwd=REPO,
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
    )
    err = cli.stderr.strip().splitlines()
    return CliAdd(
        exit_code=cli.returncode, stderr_last_line=err[-1][:300] if err else "", traceback="Traceback" in cli.stderr
    )


def fault_unwritable_registry(
    server: LiveServer, made: dict, inputs: dict, fp: Fingerprints, max_new: int
) -> UnwritableRegistryResult:
    """A promotion while the registry home is read-only, then while the disk is full; the champion keeps serving."""
    task = "ner"
    before = routes_snapshot(server.home)

    def attempt(how: str, fsize: int | None = None) -> RegistryAttempt:
        """A promotion through the API, the champion probed, then `registry add` through the CLI."""
        r = requests.post(
            f"{server.url}/admin/promote", json={"task": task, "version": 2}, headers=server.admin, timeout=300
        )
        health = _healthy(server, inputs, fp, max_new)
        return RegistryAttempt(
            measured=True,
            how=how,
            promote_status=r.status_code,
            promote_message=r.json().get("error", {}).get("message", "")[:300] if r.status_code >= 400 else "",
            champion_still_served=health.healthy,
            answers=health.answers,
            cli_add=_cli_add(server, made[task][1], task, fsize=fsize),
        )

    ro = _read_only(server.home / "registry")
    if ro is None:
        read_only = NotMeasured(measured=False, why="root without mount: permissions do not stop root here")
    else:
        with ro as how:
            read_only = attempt(how)
    # Disk full: every write past 0 bytes fails (RLIMIT_FSIZE=0 on the service's processes; Python ignores SIGXFSZ,
    # so a write fails with EFBIG as it would with ENOSPC on a full disk).
    procs = server.processes()
    old = {p.pid: p.rlimit(psutil.RLIMIT_FSIZE) for p in procs}
    try:
        for p in procs:
            p.rlimit(psutil.RLIMIT_FSIZE, (0, old[p.pid][1]))
        disk_full = attempt("RLIMIT_FSIZE=0 on the service's processes", fsize=0)
    finally:
        for p in procs:
            try:
                p.rlimit(psutil.RLIMIT_FSIZE, old[p.pid])
            except psutil.NoSuchProcess:
                pass
    registry_unchanged = routes_snapshot(server.home) == before
    after = requests.post(
        f"{server.url}/admin/promote", json={"task": task, "version": 2}, headers=server.admin, timeout=300
    )
    requests.post(f"{server.url}/admin/promote", json={"task": task, "version": 1}, headers=server.admin, timeout=300)
    return UnwritableRegistryResult(
        read_only=read_only,
        disk_full=disk_full,
        registry_unchanged=registry_unchanged,
        promote_after_recovery=after.status_code,
        service_alive=server.alive(),
    )
