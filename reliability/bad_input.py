"""Bad input, counted: the quick part under pytest, then the hostile table, raw HTTP garbage, a stalled body, a
hung-up stream and the token checks against the live server."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import requests

from reliability.cases import check_response, hostile_cases
from reliability.results.bad_input import (
    BadInputLiveResult,
    QuickResult,
    SecurityLiveResult,
    StalledBody,
    StreamHangUp,
)
from service.live import REPO, LiveServer

BAD_INPUT_KINDS = {"fuzz", "hostile", "bad-file", "security"}


# -- the quick part, counted --------------------------------------------------------------------------------


def run_quick(work: Path, fuzz_examples: int) -> QuickResult:
    """tests/reliability under pytest, every bad-input case recorded; returns the counts."""
    record, junit = work / "quick-cases.jsonl", work / "quick-junit.xml"
    record.unlink(missing_ok=True)
    env = dict(
        os.environ, RELIABILITY_RECORD=str(record), RELIABILITY_FUZZ_EXAMPLES=str(fuzz_examples), HF_HUB_OFFLINE="1"
    )
    # The report's own tests (test_results.py) check the stored figures of the previous run: not a property of the
    # service, and a run must not depend on the one before it.
    cmd = [
        *[sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/reliability"],
        *["--ignore", "tests/reliability/test_results.py", f"--junitxml={junit}"],
    ]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    (work / "quick-pytest.log").write_text(proc.stdout + proc.stderr)
    recorded = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    rows = [r for r in recorded if r["kind"] in BAD_INPUT_KINDS]  # the faults' deliberate 503s are not bad input
    distinct = {(r["kind"], r["id"]): r for r in rows}
    suite = ET.parse(junit).getroot().find("testsuite") if junit.exists() else None
    summary = (proc.stdout.strip().splitlines() or [""])[-1]
    return QuickResult(
        pytest_exit_code=proc.returncode,
        pytest_summary=summary.strip("= "),
        tests=int(suite.get("tests")) if suite is not None else None,
        failures=int(suite.get("failures")) + int(suite.get("errors")) if suite is not None else None,
        seconds=round(time.perf_counter() - started, 1),
        distinct_cases=len(distinct),
        cases_by_kind=dict(Counter(kind for kind, _ in distinct)),
        requests_sent=sum(1 for r in rows if r["status"] is not None),
        server_errors=sum(1 for r in rows if (r["status"] or 0) >= 500),
        problems=sorted({r["problem"] for r in rows if r["problem"]})[:20],
        crashed_processes=0 if proc.returncode in (0, 1) else 1,  # pytest itself died (signal, interpreter crash)
        failed_tests=re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, re.M)[:20],
        fault_cases=sorted({f"{r['id']}: {r['status']}" for r in recorded if r["kind"] == "fault"}),
    )


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


def _stalled_body(port: int) -> StalledBody:
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
    return StalledBody(status=int(match.group(1)) if match else None, seconds=round(time.time() - started, 1))


def _stream_and_hang_up(server: LiveServer, task: str, max_new: int) -> StreamHangUp:
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
    return StreamHangUp(
        first_event=b"data:" in data,
        idle_1_token_s=round(idle, 3),
        after_hang_up_1_token_s=round(after, 3),
        budget=max_new,
    )


def _timed_predict(server: LiveServer, task: str) -> float:
    started = time.perf_counter()
    r = requests.post(
        f"{server.url}/predict", json={"task": task, "input": "fine", "parameters": {"max_new_tokens": 1}}, timeout=300
    )
    r.raise_for_status()
    return time.perf_counter() - started


def run_bad_input_live(server: LiveServer) -> BadInputLiveResult:
    """The hand-written table, raw HTTP-level garbage and a hung-up stream, all against the real server."""
    before = server.snapshot()
    jobs_before = len(requests.get(f"{server.url}/specialists", headers=server.admin, timeout=60).json()["jobs"])
    cases = hostile_cases("sst2", server.token, cap=512)
    statuses, problems, closed, plain = Counter(), [], 0, 0
    started = time.perf_counter()
    stalled: list[StalledBody] = []  # stays empty if the server never answers within the wait
    staller = threading.Thread(target=lambda: stalled.append(_stalled_body(server.port)), daemon=True)
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
        problem = check_response(case, r.status_code, r.content)  # every error JSON, unknown paths included
        plain += r.status_code >= 400 and not r.headers.get("content-type", "").startswith("application/json")
        if problem:
            problems.append(problem)
    raw = {name: _raw(server.port, data) for name, data in RAW_CASES.items()}
    raw_bad = {name: status for name, status in raw.items() if status is not None and status >= 500}
    hang_up = _stream_and_hang_up(server, "sst2", 200)
    staller.join(timeout=120)
    after = server.snapshot()
    jobs_after = len(requests.get(f"{server.url}/specialists", headers=server.admin, timeout=60).json()["jobs"])
    return BadInputLiveResult(
        cases=len(cases) + len(RAW_CASES) + 2,
        table_cases=len(cases),
        raw_http_cases=len(RAW_CASES),
        statuses={str(k): v for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))},
        closed_while_sending=closed,
        server_errors=sum(v for k, v in statuses.items() if isinstance(k, int) and k >= 500) + len(raw_bad),
        problems=problems[:20],
        problem_count=len(problems),
        raw_statuses={k: v if v is not None else "closed" for k, v in raw.items()},
        plain_text_errors=plain,
        stalled_body=stalled[0] if stalled else None,
        stream_hang_up=hang_up,
        crashed_processes=int(not server.alive()) + len(set(before["pids"]) - set(after["pids"])),
        service_processes_same=before["pids"] == after["pids"],
        jobs_queued_by_bad_input=jobs_after - jobs_before,
        seconds=round(time.perf_counter() - started, 1),
    )


# -- security against the live server --------------------------------------------------------------------------


def run_security_live(server: LiveServer) -> SecurityLiveResult:
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
    return SecurityLiveResult(
        auth_checks=len(results),
        auth_checks_failed=[k for k, ok in results.items() if not ok],
        token_in_server_logs=server.token in logs,
        token_in_job_logs=any(
            server.token in p.read_text(errors="replace") for p in (server.home / "jobs").glob("*.log")
        ),
        service_uids_here=sorted(set(uid.values())),
    )
