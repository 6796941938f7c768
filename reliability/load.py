"""Pressure on the live server: closed-loop load, a soak with a training job the whole time, and the final stop
(nothing may be left running)."""

from __future__ import annotations

import time
from collections import Counter

import psutil
import requests

from reliability.faults import _job, _submit_job, _wait_job
from reliability.home import TASKS, predict_requests
from reliability.results.load import LoadResult, Sample, ShutdownResult, SoakResult
from reliability.traffic import Fingerprints, Traffic
from service.live import LiveServer, job_runners

# -- load -----------------------------------------------------------------------------------------------------


def run_load(
    server: LiveServer, inputs: dict, fp: Fingerprints, clients: int, seconds: float, max_new: int, warmup: float
) -> LoadResult:
    if warmup:
        Traffic(server.url, predict_requests(inputs, max_new), clients, warmup).start().join()
    traffic = Traffic(server.url, predict_requests(inputs, max_new), clients, seconds, fp, seed=1).start().join()
    s = traffic.summary()
    return LoadResult(
        **s.model_dump(),
        clients=clients,
        seconds=seconds,
        max_new_tokens=max_new,
        tasks=list(TASKS),
        p99_over_p50=round(s.p99_s / s.p50_s, 2) if s.p50_s else None,
    )


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
) -> SoakResult:
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
    samples = [Sample(t=0.0, **server.snapshot())]
    began, job_seconds = time.time(), 0.0
    while time.time() - began < seconds:
        time.sleep(min(sample_every, max(0.0, seconds - (time.time() - began))))
        status = _job(server, jobs[-1])["status"]
        if status in ("training", "preparing", "evaluating", "gating"):
            job_seconds += sample_every
        elif status in ("promoted", "rejected", "failed", "canceled"):
            jobs.append(_submit_job(server, f"soak-job-{len(jobs) + 1}", max_steps=100_000))
        samples.append(Sample(t=round(time.time() - began, 1), **server.snapshot()))
    traffic.stop()
    s = traffic.summary()
    for job_id in jobs:
        requests.delete(f"{server.url}/specialists/{job_id}", headers=server.admin, timeout=60)
    finals = [_wait_job(server, j, ("canceled", "failed", "promoted", "rejected"), 120)["status"] for j in jobs]
    time.sleep(3)
    after = server.snapshot()
    start, end = samples[0], samples[-1]
    half = samples[len(samples) // 2]
    return SoakResult(
        seconds=seconds,
        clients=clients,
        warmup_s=warmup,
        requests=s.requests,
        ok=s.ok,
        http_errors=s.http_errors,
        http_error_examples=s.http_error_examples,
        transport_errors=s.transport_errors,
        wrong_adapter=s.wrong_adapter,
        drift=s.drift,
        judged=s.judged,
        p50_s=s.p50_s,
        p99_s=s.p99_s,
        requests_per_s=s.requests_per_s,
        rss_start_mb=start.rss_mb,
        rss_half_mb=half.rss_mb,
        rss_end_mb=end.rss_mb,
        rss_max_mb=max(x.rss_mb for x in samples),
        rss_growth_pct=round(100 * (end.rss_mb / start.rss_mb - 1), 1),
        rss_growth_second_half_mb=round(end.rss_mb - half.rss_mb, 1),
        fds_start=start.fds,
        fds_end=end.fds,
        fds_after=after["fds"],
        threads_start=start.threads,
        threads_end=end.threads,
        threads_after=after["threads"],
        processes_start=start.processes,
        processes_end=end.processes,
        processes_after=after["processes"],
        job_runners_during=max(x.job_runners for x in samples),
        job_runners_after=after["job_runners"],
        jobs=len(jobs),
        job_final_statuses=dict(Counter(finals)),
        job_training_s=job_seconds,
        samples=samples,
    )


def stop_server(server: LiveServer) -> ShutdownResult:
    pids = server.snapshot()["pids"]
    code = server.stop()
    time.sleep(2)
    left = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    return ShutdownResult(exit_code=code, processes_left=len(left), job_runners_left=len(job_runners(server.home)))
