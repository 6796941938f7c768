"""Inference latency while a specialist trains vs idle, on the same service, in one run.

    .venv/bin/python benchmarks/latency_during_training.py [--requests 30] [--job-threads 1] [--serve-threads 1]

Starts `specialist serve` (default SmolLM2) with one routed adapter, measures sequential /predict latency
while idle, submits a specialist job (training runs in its own process, `job_threads` torch threads), measures
the same requests while the job trains, then cancels it. Prints p50/p90 of both and the ratio; writes
benchmarks/results/latency_during_training.json. Traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402

TOKEN = "bench-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
TASK = "task363_sst2_polarity_classification"


def _latencies(url: str, inputs: list[str], n: int) -> list[float]:
    out = []
    for i in range(n):
        started = time.perf_counter()
        r = httpx.post(
            f"{url}/predict",
            json={"task": "served", "input": inputs[i % len(inputs)], "parameters": {"max_new_tokens": 4}},
            timeout=120,
        )
        r.raise_for_status()
        out.append(time.perf_counter() - started)
    return out


def _summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "p50_seconds": round(statistics.median(ordered), 3),
        "p90_seconds": round(ordered[int(0.9 * (len(ordered) - 1))], 3),
        "n": len(ordered),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--job-threads", type=int, default=1)
    parser.add_argument("--serve-threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "latency_during_training.json")
    args = parser.parse_args()

    from eval.benchmarks import task_benchmark
    from service.live import LiveServer
    from specialist.adapters import Registry
    from specialist.paths import default_task_data
    from specialist.testing import random_adapters

    inputs = [i.input for i in task_benchmark(default_task_data(), TASK, limit=20).instances]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        adapter = random_adapters(Path(tmp) / "adapters", [TASK], scale=0.01)[0]
        Registry(home).add(adapter, "served", skip_gate=True, actor="benchmark")
        serve_args = ["--num-threads", str(args.serve_threads), "--job-threads", str(args.job_threads)]
        # Its output goes nowhere; SIGTERM and a wait at the end.
        with LiveServer(home, TOKEN, serve_args, ready_timeout=300) as server:
            url = server.url
            _latencies(url, inputs, 3)  # warm-up
            idle = _latencies(url, inputs, args.requests)
            body = {
                "task": "trainee",
                "superni_task": TASK,
                "instances_per_task": 64,
                "generalist": "none",
                "budget": {"max_steps": 10_000},
            }
            job_id = httpx.post(f"{url}/specialists", json=body, headers=HEADERS).json()["job_id"]
            while httpx.get(f"{url}/specialists/{job_id}", headers=HEADERS).json()["status"] != "training":
                time.sleep(0.5)
            time.sleep(3)  # past the first step's warm-up
            busy = _latencies(url, inputs, args.requests)
            status = httpx.get(f"{url}/specialists/{job_id}", headers=HEADERS).json()
            httpx.delete(f"{url}/specialists/{job_id}", headers=HEADERS)

    report = {
        "idle": _summary(idle),
        "during_training": _summary(busy),
        "job_status_while_measured": status["status"],
        "training_step_reached": status["progress"].get("step"),
        "serve_threads": args.serve_threads,
        "job_threads": args.job_threads,
        "cores": os.cpu_count(),
    }
    report["p50_ratio"] = round(report["during_training"]["p50_seconds"] / report["idle"]["p50_seconds"], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
