"""The long part: every scenario against a real `specialist serve`, each returning its figures as a dict.

Order matters only where a scenario leaves state behind: the corrupt-adapter fault leaves a refused newest
champion, which the restart fault then checks is still refused (and the previous champion still served).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import psutil
import requests

from reliability.badfiles import ADAPTER_DEFECTS
from reliability.cases import check_response, hostile_cases
from reliability.traffic import Fingerprints, Traffic, fingerprint, predict
from service.live import REPO, LiveServer, job_runners

# The routed tasks (served name -> SuperNI task): four task shapes, from a one-word label to a headline.
TASKS = {
    "sst2": "task363_sst2_polarity_classification",
    "obqa": "task1399_obqa_answer_generation",
    "ner": "task610_conllpp_ner",
    "headline": "task288_gigaword_summarization",
}
JOB_TASK = "task363_sst2_polarity_classification"
BAD_INPUT_KINDS = {"fuzz", "hostile", "bad-file", "security"}


# -- the quick part, counted --------------------------------------------------------------------------------


def run_quick(work: Path, fuzz_examples: int) -> dict:
    """tests/reliability under pytest, every bad-input case recorded; returns the counts."""
    record, junit = work / "quick-cases.jsonl", work / "quick-junit.xml"
    record.unlink(missing_ok=True)
    env = dict(
        os.environ, RELIABILITY_RECORD=str(record), RELIABILITY_FUZZ_EXAMPLES=str(fuzz_examples), HF_HUB_OFFLINE="1"
    )
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/reliability", f"--junitxml={junit}"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    (work / "quick-pytest.log").write_text(proc.stdout + proc.stderr)
    recorded = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    rows = [r for r in recorded if r["kind"] in BAD_INPUT_KINDS]  # the faults' deliberate 503s are not bad input
    distinct = {(r["kind"], r["id"]): r for r in rows}
    suite = ET.parse(junit).getroot().find("testsuite") if junit.exists() else None
    summary = (proc.stdout.strip().splitlines() or [""])[-1]
    return {
        "pytest_exit_code": proc.returncode,
        "pytest_summary": summary.strip("= "),
        "tests": int(suite.get("tests")) if suite is not None else None,
        "failures": int(suite.get("failures")) + int(suite.get("errors")) if suite is not None else None,
        "seconds": round(time.perf_counter() - started, 1),
        "distinct_cases": len(distinct),
        "cases_by_kind": dict(Counter(kind for kind, _ in distinct)),
        "requests_sent": sum(1 for r in rows if r["status"] is not None),
        "server_errors": sum(1 for r in rows if (r["status"] or 0) >= 500),
        "problems": sorted({r["problem"] for r in rows if r["problem"]})[:20],
        "crashed_processes": 0 if proc.returncode in (0, 1) else 1,  # pytest itself died (signal, interpreter crash)
        "failed_tests": re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, re.M)[:20],
        "fault_cases": sorted({f"{r['id']}: {r['status']}" for r in recorded if r["kind"] == "fault"}),
    }


# -- setting up a home with 4 routed tasks, each with a second version ------------------------------------------


def build_home(work: Path, scale: float) -> dict:
    """Random LoRA adapters on the default model for the 4 tasks (v1, routed) and a second set (v2, registered
    only); returns {task: [v1 dir, v2 dir]}."""
    sys.path.insert(0, str(REPO))
    from benchmarks.common import random_adapters
    from specialist.adapters import Registry

    superni = list(TASKS.values())
    dirs = random_adapters(work / "adapters", superni + superni, scale=scale)  # 8 seeds: 8 distinct adapters
    registry = Registry(work / "home")
    made = {}
    for i, task in enumerate(TASKS):
        registry.add(dirs[i], task, skip_gate=True, actor="reliability")
        registry.add(dirs[4 + i], task, skip_gate=True, actor="reliability", promote=False)
        made[task] = [dirs[i], dirs[4 + i]]
    return made


def task_inputs(per_task: int) -> dict[str, list[str]]:
    from eval.benchmarks import superni_benchmark
    from specialist.paths import default_task_data

    return {
        t: [i.input for i in superni_benchmark(default_task_data(), s, limit=per_task).instances]
        for t, s in TASKS.items()
    }


def served_prompts(home: Path) -> dict:
    from service.router import task_prompt
    from specialist.adapters import Registry

    registry = Registry(home)
    return {task: task_prompt(registry.version(task, 1).path, task) for task in TASKS}


SWAPPED = ("sst2", "obqa")  # the tasks whose v2 is promoted and rolled back under load


def make_fingerprints(server: LiveServer, inputs: dict, prompts: dict, max_new: int) -> Fingerprints:
    """Answers of every routed adapter (v1 of all four, then v2 of the swapped two) to every task's prompts."""
    fp = fingerprint(server.url, server.admin, inputs, prompts, {t: 1 for t in TASKS}, max_new)
    for task in SWAPPED:
        _admin(server, "/admin/promote", {"task": task, "version": 2})
    fp = fingerprint(
        server.url,
        server.admin,
        inputs,
        prompts,
        {t: 2 if t in SWAPPED else 1 for t in TASKS},
        max_new,
        fp,
        only=SWAPPED,
    )
    for task in SWAPPED:
        _admin(server, "/admin/promote", {"task": task, "version": 1})
    return fp


def _admin(server: LiveServer, path: str, body: dict | None = None, expect: int = 200) -> dict:
    r = requests.post(f"{server.url}{path}", json=body, headers=server.admin, timeout=300)
    assert r.status_code == expect, f"{path} {body}: {r.status_code} {r.text[:300]}"
    return r.json()


def predict_requests(inputs: dict, max_new: int):
    tasks = list(inputs)

    def make(rng):
        task = rng.choice(tasks)
        text = rng.choice(inputs[task])
        return (
            "predict",
            "POST",
            "/predict",
            {"task": task, "input": text, "parameters": {"max_new_tokens": max_new}},
            (200,),
            (task, text),
        )

    return make


def routes_snapshot(home: Path) -> dict:
    from specialist.adapters import Registry

    registry = Registry(home)
    return {
        "routes": {t: v.version for t, v in registry.routes().items()},
        "versions": len(registry.versions()),
        "history": len(registry.history()),
    }


# -- bad input against the live server -------------------------------------------------------------------------

RAW_CASES = {
    "garbage-request-line": b"HELLO WORLD\r\n\r\n",
    "bad-content-length": b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: abc\r\n\r\n{}",
    "negative-content-length": b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    "two-content-lengths": b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 9\r\n\r\n{}",
    "bad-chunk-size": b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n",
    "huge-header": b"GET /tasks HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
    "nul-in-path": b"GET /tasks\x00/../etc HTTP/1.1\r\nHost: x\r\n\r\n",
    "http-0.9": b"GET /tasks\r\n\r\n",
    "body-shorter-than-declared": b'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"task":',
    "invalid-utf8-path": b"GET /tasks/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    "non-ascii-header": b"GET /tasks HTTP/1.1\r\nHost: x\r\nX-Name: \xff\xfe\r\n\r\n",
}


def _raw(port: int, data: bytes, timeout: float = 10) -> int | None:
    """Send raw bytes, read the answer's status (None: the server closed the connection without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            head = s.recv(64)
        except OSError:
            return None
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return int(match.group(1)) if match else None


def _stalled_body(port: int) -> dict:
    """Headers and half a body, then silence with the connection open: the server must give up (408)."""
    started = time.time()
    head = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        b'{"task": "sst2", "input": "'
    )
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        s.sendall(head)
        try:
            answer = s.recv(4096)
        except OSError:
            answer = b""
    match = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    return {"status": int(match.group(1)) if match else None, "seconds": round(time.time() - started, 1)}


def _stream_and_hang_up(server: LiveServer, task: str, max_new: int) -> dict:
    """Start a long greedy stream, read its first event, close the socket; then time a 1-token request."""
    body = json.dumps({"inputs": "a fine film", "parameters": {"adapter_id": task, "max_new_tokens": max_new}}).encode()
    request = (
        f"POST /generate_stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    idle = _timed_predict(server, task)
    with socket.create_connection(("127.0.0.1", server.port), timeout=120) as s:
        s.sendall(request)
        data = b""
        while b"data:" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    after = _timed_predict(server, task)
    return {
        "first_event": b"data:" in data,
        "idle_1_token_s": round(idle, 3),
        "after_hang_up_1_token_s": round(after, 3),
        "budget": max_new,
    }


def _timed_predict(server: LiveServer, task: str) -> float:
    started = time.perf_counter()
    r = requests.post(
        f"{server.url}/predict", json={"task": task, "input": "fine", "parameters": {"max_new_tokens": 1}}, timeout=300
    )
    r.raise_for_status()
    return time.perf_counter() - started


def run_bad_input_live(server: LiveServer) -> dict:
    """The hand-written table, raw HTTP-level garbage and a hung-up stream, all against the real server."""
    before = server.snapshot()
    jobs_before = len(requests.get(f"{server.url}/specialists", headers=server.admin, timeout=60).json()["jobs"])
    cases = hostile_cases("sst2", server.token, cap=512)
    statuses, problems, closed, plain = Counter(), [], 0, 0
    started = time.perf_counter()
    stalled: dict = {}
    staller = threading.Thread(target=lambda: stalled.update(_stalled_body(server.port)), daemon=True)
    staller.start()  # a client whose body never comes, while everything else is served
    session = requests.Session()
    for case in cases:
        try:
            r = session.request(
                case.method, f"{server.url}{case.path}", data=case.body, headers=case.headers, timeout=300
            )
        except requests.ConnectionError:
            session = requests.Session()
            if 413 in case.expect:  # refused before the whole body was sent: the server closed the connection
                closed += 1
                statuses["closed"] += 1
                continue
            problems.append(f"{case.id}: connection error")
            continue
        statuses[r.status_code] += 1
        problem = check_response(case, r.status_code, r.content, plain_ok=True)
        plain += r.status_code >= 400 and not r.headers.get("content-type", "").startswith("application/json")
        if problem:
            problems.append(problem)
    raw = {name: _raw(server.port, data) for name, data in RAW_CASES.items()}
    raw_bad = {name: status for name, status in raw.items() if status is not None and status >= 500}
    hang_up = _stream_and_hang_up(server, "sst2", 200)
    staller.join(timeout=120)
    after = server.snapshot()
    jobs_after = len(requests.get(f"{server.url}/specialists", headers=server.admin, timeout=60).json()["jobs"])
    return {
        "cases": len(cases) + len(RAW_CASES) + 2,
        "table_cases": len(cases),
        "raw_http_cases": len(RAW_CASES),
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))},
        "closed_while_sending": closed,
        "server_errors": sum(v for k, v in statuses.items() if isinstance(k, int) and k >= 500) + len(raw_bad),
        "problems": problems[:20],
        "problem_count": len(problems),
        "raw_statuses": {k: v if v is not None else "closed" for k, v in raw.items()},
        "plain_text_errors": plain,  # answered by BentoML itself (paths outside the app's routes)
        "stalled_body": stalled,
        "stream_hang_up": hang_up,
        "crashed_processes": int(not server.alive()) + len(set(before["pids"]) - set(after["pids"])),
        "service_processes_same": before["pids"] == after["pids"],
        "jobs_queued_by_bad_input": jobs_after - jobs_before,
        "seconds": round(time.perf_counter() - started, 1),
    }


# -- security against the live server --------------------------------------------------------------------------


def run_security_live(server: LiveServer) -> dict:
    routes = [
        ("POST", "/admin/promote"),
        ("POST", "/admin/rollback"),
        ("POST", "/admin/reload"),
        ("POST", "/uploads"),
        ("GET", "/specialists"),
        ("POST", "/specialists"),
        ("GET", f"/specialists/{'0' * 32}"),
        ("DELETE", f"/specialists/{'0' * 32}"),
    ]
    results = {}
    for method, path in routes:
        for label, headers, want in (
            ("missing", {}, 401),
            ("wrong", {"Authorization": "Bearer wrong-token"}, 403),
            ("prefix", {"Authorization": f"Bearer {server.token[:-1]}"}, 403),
        ):
            r = requests.request(
                method,
                f"{server.url}{path}",
                data=b"{garbage",
                headers={"content-type": "application/json", **headers},
                timeout=60,
            )
            results[f"{method} {path} {label}"] = r.status_code == want
    logs = "".join(p.read_text(errors="replace") for p in server.logs)
    uid = {p.pid: p.uids().real for p in server.processes()}
    return {
        "auth_checks": len(results),
        "auth_checks_failed": [k for k, ok in results.items() if not ok],
        "token_in_server_logs": server.token in logs,
        "token_in_job_logs": any(
            server.token in p.read_text(errors="replace") for p in (server.home / "jobs").glob("*.log")
        ),
        "service_uids_here": sorted(set(uid.values())),
    }


# -- load -----------------------------------------------------------------------------------------------------


def run_load(
    server: LiveServer, inputs: dict, fp: Fingerprints, clients: int, seconds: float, max_new: int, warmup: float
) -> dict:
    if warmup:
        Traffic(server.url, predict_requests(inputs, max_new), clients, warmup).start().join()
    traffic = Traffic(server.url, predict_requests(inputs, max_new), clients, seconds, fp, seed=1).start().join()
    s = traffic.summary()
    s |= {
        "clients": clients,
        "seconds": seconds,
        "max_new_tokens": max_new,
        "tasks": list(TASKS),
        "p99_over_p50": round(s["p99_s"] / s["p50_s"], 2) if s["p50_s"] else None,
    }
    return s


# -- faults ---------------------------------------------------------------------------------------------------


def fault_promotion_during_load(
    server: LiveServer, inputs: dict, fp: Fingerprints, clients: int, seconds: float, max_new: int
) -> dict:
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
    return {
        "requests": s["requests"],
        "failed_requests": s["http_errors"] + s["transport_errors"],
        "wrong_adapter": s["wrong_adapter"],
        "drift": s["drift"],
        "judged": s["judged"],
        "swaps": len(swaps),
        "swaps_failed": sum(st != 200 for st in swaps),
        "swap_p50_s": round(sorted(swap_seconds)[len(swap_seconds) // 2], 3) if swap_seconds else None,
        "swap_max_s": round(max(swap_seconds), 3) if swap_seconds else None,
        "final_routes": final,
        "errors": s["http_error_examples"],
        "p50_s": s["p50_s"],
        "p99_s": s["p99_s"],
    }


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


def _wait_job(server: LiveServer, job_id: str, statuses: tuple[str, ...], timeout: float) -> dict:
    deadline = time.time() + timeout
    job = _job(server, job_id)
    while job["status"] not in statuses and time.time() < deadline:
        time.sleep(1)
        job = _job(server, job_id)
    return job


def _healthy(server: LiveServer, inputs: dict, fp: Fingerprints, max_new: int) -> dict:
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
    return {
        "ready": ready,
        "readyz_s": ready_s,
        "answers": dict(verdicts),
        "healthy": ready and set(verdicts) <= {"ok", "drift"},
    }


def fault_kill_training(server: LiveServer, inputs: dict, fp: Fingerprints, max_new: int) -> dict:
    """SIGKILL the training process of a running job: the job fails, the registry is untouched, the service serves."""
    before = routes_snapshot(server.home)
    job_id = _submit_job(server, "killed-job", max_steps=5000)
    job = _wait_job(server, job_id, ("training", "failed", "rejected", "promoted"), 600)
    runners = job_runners(server.home, job_id)
    killed = None
    if job["status"] == "training" and runners:
        killed = runners[0].pid
        os.kill(killed, signal.SIGKILL)
    job = _wait_job(server, job_id, ("failed", "canceled", "rejected", "promoted"), 120)
    time.sleep(1)
    return {
        "killed_pid": killed,
        "status": job["status"],
        "error": job.get("error"),
        "registry_unchanged": routes_snapshot(server.home) == before,
        "runners_left": len(job_runners(server.home, job_id)),
        **_healthy(server, inputs, fp, max_new),
        "passed": bool(killed) and job["status"] == "failed" and routes_snapshot(server.home) == before,
    }


def fault_corrupt_skip_gate(
    server: LiveServer, made: dict, inputs: dict, fp: Fingerprints, work: Path, max_new: int
) -> dict:
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
        results[defect] = {
            "registered": cli.returncode == 0,
            "version": int(added.group(1)) if added else None,
            "refused": refused,
            "served_version": served.get(task),
            "requests": s["requests"],
            "failed_requests": s["http_errors"] + s["transport_errors"],
            "wrong_adapter": s["wrong_adapter"],
            "drift": s["drift"],
            "ready": requests.get(f"{server.url}/readyz", timeout=60).status_code == 200,
        }
        x = results[defect]
        x["passed"] = (
            bool(refused)
            and served.get(task) == 1
            and x["failed_requests"] == 0
            and x["wrong_adapter"] == 0
            and x["ready"]
        )
    return results


def fault_kill_restart(
    server: LiveServer, inputs: dict, fp: Fingerprints, clients: int, seconds: float, max_new: int
) -> dict:
    """SIGKILL the whole service while a job trains and clients are sending; start it again on the same port."""
    before = routes_snapshot(server.home)
    served_before = {t["task"]: t["version"] for t in requests.get(f"{server.url}/tasks", timeout=60).json()["tasks"]}
    job_id = _submit_job(server, "restart-job", max_steps=5000)
    job = _wait_job(server, job_id, ("training", "failed"), 600)
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
    served_after = {t["task"]: t["version"] for t in tasks_after["tasks"]}
    refused_after = tasks_after["refused"]
    return {
        "job_status_before": job["status"],
        "job_status_after": after_job["status"],
        "job_error_after": after_job.get("error"),
        "job_runner_outlived_the_crash": runner_survived,
        "job_runners_left": len(job_runners(server.home, job_id)),
        "gap_s": round(up - down, 1),
        "restart_to_ready_s": round(restart_seconds, 1),
        "routes_intact": routes_snapshot(server.home)["routes"] == before["routes"],
        "served_before": served_before,
        "served_after": served_after,
        "refused_after": refused_after,
        "requests": s["requests"],
        "transport_errors": s["transport_errors"],
        "transport_errors_by_type": s["transport_errors_by_type"],
        "http_errors": s["http_errors"],
        "http_error_examples": s["http_error_examples"],
        "wrong_adapter": s["wrong_adapter"],
        "drift": s["drift"],
        "judged": s["judged"],
    }


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


def _cli_add(server: LiveServer, adapter: Path, task: str, fsize: int | None = None) -> dict:
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
    return {
        "exit_code": cli.returncode,
        "stderr_last_line": err[-1][:300] if err else "",
        "traceback": "Traceback" in cli.stderr,
    }


def fault_unwritable_registry(server: LiveServer, made: dict, inputs: dict, fp: Fingerprints, max_new: int) -> dict:
    """A promotion while the registry home is read-only, then while the disk is full; the champion keeps serving."""
    task, results = "ner", {}
    before = routes_snapshot(server.home)

    def attempt(label: str) -> dict:
        r = requests.post(
            f"{server.url}/admin/promote", json={"task": task, "version": 2}, headers=server.admin, timeout=300
        )
        health = _healthy(server, inputs, fp, max_new)
        return {
            "promote_status": r.status_code,
            "promote_message": r.json().get("error", {}).get("message", "")[:300] if r.status_code >= 400 else "",
            "champion_still_served": health["healthy"],
            "answers": health["answers"],
        }

    ro = _read_only(server.home / "registry")
    if ro is None:
        results["read_only"] = {"measured": False, "why": "root without mount: permissions do not stop root here"}
    else:
        with ro as how:
            results["read_only"] = {
                "measured": True,
                "how": how,
                **attempt("read-only"),
                "cli_add": _cli_add(server, made[task][1], task),
            }
    # Disk full: every write past 0 bytes fails (RLIMIT_FSIZE=0 on the service's processes; Python ignores SIGXFSZ,
    # so a write fails with EFBIG as it would with ENOSPC on a full disk).
    procs = server.processes()
    old = {p.pid: p.rlimit(psutil.RLIMIT_FSIZE) for p in procs}
    try:
        for p in procs:
            p.rlimit(psutil.RLIMIT_FSIZE, (0, old[p.pid][1]))
        results["disk_full"] = {
            "measured": True,
            "how": "RLIMIT_FSIZE=0 on the service's processes",
            **attempt("disk-full"),
            "cli_add": _cli_add(server, made[task][1], task, fsize=0),
        }
    finally:
        for p in procs:
            try:
                p.rlimit(psutil.RLIMIT_FSIZE, old[p.pid])
            except psutil.NoSuchProcess:
                pass
    results["registry_unchanged"] = routes_snapshot(server.home) == before
    after = requests.post(
        f"{server.url}/admin/promote", json={"task": task, "version": 2}, headers=server.admin, timeout=300
    )
    results["promote_after_recovery"] = after.status_code
    requests.post(f"{server.url}/admin/promote", json={"task": task, "version": 1}, headers=server.admin, timeout=300)
    results["service_alive"] = server.alive()
    return results


# -- soak -----------------------------------------------------------------------------------------------------


def soak_requests(inputs: dict, max_new: int):
    """Mixed traffic: every endpoint family, streaming included, plus a share of bad requests."""
    tasks = list(inputs)

    def make(rng):
        task, roll = rng.choice(tasks), rng.random()
        text = rng.choice(inputs[task])
        if roll < 0.35:
            return (
                "predict",
                "POST",
                "/predict",
                {"task": task, "input": text, "parameters": {"max_new_tokens": max_new}},
                (200,),
                (task, text),
            )
        if roll < 0.45:
            return (
                "chat",
                "POST",
                "/v1/chat/completions",
                {"model": task, "messages": [{"role": "user", "content": text}], "max_tokens": max_new},
                (200,),
                None,
            )
        if roll < 0.55:
            return (
                "completions-stream",
                "POST",
                "/v1/completions",
                {"model": task, "prompt": text, "max_tokens": max_new, "stream": True},
                (200,),
                None,
            )
        if roll < 0.65:
            return (
                "generate",
                "POST",
                "/generate",
                {"inputs": text, "parameters": {"adapter_id": task, "max_new_tokens": max_new}},
                (200,),
                None,
            )
        if roll < 0.75:
            return (
                "generate-stream",
                "POST",
                "/generate_stream",
                {"inputs": text, "parameters": {"adapter_id": task, "max_new_tokens": max_new}},
                (200,),
                None,
            )
        if roll < 0.85:
            return (
                "read",
                "GET",
                rng.choice(["/tasks", "/v1/models", "/info", "/metrics", "/livez", "/readyz"]),
                None,
                (200,),
                None,
            )
        if roll < 0.90:
            return "bad-unknown-task", "POST", "/predict", {"task": "no-such-task", "input": text}, (404,), None
        if roll < 0.95:
            return (
                "bad-max-new-tokens",
                "POST",
                "/predict",
                {"task": task, "input": text, "parameters": {"max_new_tokens": 0}},
                (422,),
                None,
            )
        return "bad-oversize", "POST", "/predict", {"task": task, "input": "word " * 3000}, (413,), None

    return make


def _cancel_unfinished_jobs(server: LiveServer) -> None:
    for job in requests.get(f"{server.url}/specialists", headers=server.admin, timeout=60).json()["jobs"]:
        if job["status"] not in ("promoted", "rejected", "failed", "canceled"):
            requests.delete(f"{server.url}/specialists/{job['job_id']}", headers=server.admin, timeout=60)
            _wait_job(server, job["job_id"], ("promoted", "rejected", "failed", "canceled"), 120)


def run_soak(
    server: LiveServer,
    inputs: dict,
    fp: Fingerprints,
    clients: int,
    seconds: float,
    max_new: int,
    sample_every: float = 10,
) -> dict:
    """Mixed traffic for `seconds` with a specialist job training the whole time (restarted if it ends)."""
    _cancel_unfinished_jobs(server)  # the soak's job must not wait behind another scenario's
    jobs = [_submit_job(server, "soak-job-1", max_steps=100_000)]
    _wait_job(server, jobs[0], ("training", "failed"), 600)
    traffic = Traffic(server.url, soak_requests(inputs, max_new), clients, None, fp, seed=5).start()
    # Warm-up (not measured): until every client has had answers (first batches allocate what later ones reuse).
    started, warmup = time.time(), min(30.0, max(5.0, seconds / 10))
    while (len(traffic.outcomes) < clients or time.time() - started < warmup) and time.time() - started < 600:
        time.sleep(1)
    warmup = round(time.time() - started, 1)
    samples = [{"t": 0.0, **server.snapshot()}]
    began, job_seconds = time.time(), 0.0
    while time.time() - began < seconds:
        time.sleep(min(sample_every, max(0.0, seconds - (time.time() - began))))
        status = _job(server, jobs[-1])["status"]
        if status in ("training", "preparing", "evaluating", "gating"):
            job_seconds += sample_every
        elif status in ("promoted", "rejected", "failed", "canceled"):
            jobs.append(_submit_job(server, f"soak-job-{len(jobs) + 1}", max_steps=100_000))
        samples.append({"t": round(time.time() - began, 1), **server.snapshot()})
    traffic.stop()
    s = traffic.summary()
    for job_id in jobs:
        requests.delete(f"{server.url}/specialists/{job_id}", headers=server.admin, timeout=60)
    finals = [_wait_job(server, j, ("canceled", "failed", "promoted", "rejected"), 120)["status"] for j in jobs]
    time.sleep(3)
    after = server.snapshot()
    start, end = samples[0], samples[-1]
    half = samples[len(samples) // 2]
    return {
        "seconds": seconds,
        "clients": clients,
        "warmup_s": warmup,
        "requests": s["requests"],
        "ok": s["ok"],
        "http_errors": s["http_errors"],
        "http_error_examples": s["http_error_examples"],
        "transport_errors": s["transport_errors"],
        "wrong_adapter": s["wrong_adapter"],
        "drift": s["drift"],
        "judged": s["judged"],
        "p50_s": s["p50_s"],
        "p99_s": s["p99_s"],
        "requests_per_s": s["requests_per_s"],
        "rss_start_mb": start["rss_mb"],
        "rss_half_mb": half["rss_mb"],
        "rss_end_mb": end["rss_mb"],
        "rss_max_mb": max(x["rss_mb"] for x in samples),
        "rss_growth_pct": round(100 * (end["rss_mb"] / start["rss_mb"] - 1), 1),
        "rss_growth_second_half_mb": round(end["rss_mb"] - half["rss_mb"], 1),
        "fds_start": start["fds"],
        "fds_end": end["fds"],
        "fds_after": after["fds"],
        "threads_start": start["threads"],
        "threads_end": end["threads"],
        "threads_after": after["threads"],
        "processes_start": start["processes"],
        "processes_end": end["processes"],
        "processes_after": after["processes"],
        "job_runners_during": max(x["job_runners"] for x in samples),
        "job_runners_after": after["job_runners"],
        "jobs": len(jobs),
        "job_final_statuses": dict(Counter(finals)),
        "job_training_s": job_seconds,
        "samples": samples,
    }


def stop_server(server: LiveServer) -> dict:
    pids = server.snapshot()["pids"]
    code = server.stop()
    time.sleep(2)
    left = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    return {"exit_code": code, "processes_left": len(left), "job_runners_left": len(job_runners(server.home))}
