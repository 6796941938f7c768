"""Serving under closed-loop load, in one run: our service on the local backend (K adapters) and on the vLLM
backend, a raw vLLM server, and a naive PEFT server.

    .venv/bin/python benchmarks/serve_load.py [--clients 8 32] [--seconds 20] [--max-new-tokens 16] [--threads 2] [--task T] [--no-vllm]

- Ours, local: `specialist serve` (bentoml, local backend, default SmolLM2) with 8 routed adapters; the clients
  spread their requests over K = 1, 4 and 8 of them. Every adapter is made for the same SuperNI task and every
  configuration sends the same inputs in the same order, so K changes only how traffic spreads over adapters.
- Ours, vLLM: the same service with `--backend vllm` (its own vLLM engine, from `make vllm`), 8 adapters.
- Raw vLLM: vLLM's own OpenAI server as its docs run it, the same 8 adapters as `--lora-modules`, the same
  engine settings (threads, KV cache, max LoRA rank and count, model length); the clients send it the prompts
  our service renders (`model` = the adapter), greedy, with 4 of the frame's end markers as `stop` (vLLM takes
  at most 4). What separates it from ours-on-vLLM is the cost of routing, validation and the stop rule.
- Naive: an HTTP server written here that handles one request at a time: `set_adapter`, then `generate`.
- Load: C closed-loop clients for each C given (ours and naive alike), prompts from real SuperNI held-out
  instances, fixed max_new_tokens. C bounds the batch a server can form: a comparison holds only at equal C.
- Also: adapter hot-load time (register + promote a new version until it serves) through the admin API.
Prints tokens/s, p50/p99 latency and errors per configuration; writes benchmarks/results/serve_load.json
and, for people, serve_load.md and serve_load.png beside it.
Adapters are LoRA weights drawn at random (non-zero), registered with --skip-gate: load does not depend on
what they learned. Traffic goes only to 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import requests  # noqa: E402

from service.live import LiveServer, free_port, wait_ready  # noqa: E402

TASK = "task363_sst2_polarity_classification"
ADMIN_TOKEN = "bench-token"
RAW_VLLM_STOPS = ["\nInput:", "\nOutput:", "\nPositive Example", "\nDefinition:"]  # vLLM takes at most 4
LORA_RANK = 16  # random_adapters' rank: both vLLM engines get max_lora_rank 16


def make_adapters(root: Path, n: int, task: str) -> list[Path]:
    """n random adapters for `task`; small B so outputs change without becoming noise."""
    from specialist.testing import random_adapters

    return random_adapters(root, [task] * n, scale=0.01)


def prompts_per_adapter(n: int, task: str, per: int = 40) -> dict[str, list[str]]:
    """The same held-out inputs for every adapter."""
    from eval.benchmarks import task_benchmark
    from specialist.paths import default_task_data

    inputs = [i.input for i in task_benchmark(default_task_data(), task, limit=per).instances]
    return {f"t{i}": inputs for i in range(n)}


def closed_loop(
    url: str,
    tasks: list[str],
    prompts: dict[str, list[str]],
    clients: int,
    seconds: float,
    max_new: int,
    raw_vllm: dict[str, object] | None = None,
) -> dict:
    """`raw_vllm`: task -> its TaskPrompt, to send vLLM's own /v1/completions the prompt our service renders."""
    latencies, tokens, errors = [], [0], [0]
    lock = threading.Lock()
    stop_at = time.time() + seconds

    def client(k: int) -> None:
        session = requests.Session()
        i = k
        while time.time() < stop_at:
            task = tasks[i % len(tasks)]
            text = prompts[task][i % len(prompts[task])]
            i += clients
            started = time.perf_counter()
            try:
                if raw_vllm is None:
                    r = session.post(
                        f"{url}/predict",
                        json={"task": task, "input": text, "parameters": {"max_new_tokens": max_new}},
                        timeout=300,
                    )
                else:
                    body = {
                        "model": task,
                        "prompt": raw_vllm[task].render(text),
                        "max_tokens": max_new,
                        "temperature": 0,
                        "stop": RAW_VLLM_STOPS,
                    }
                    r = session.post(f"{url}/v1/completions", json=body, timeout=300)
                ok = r.status_code == 200
                n = r.json()["usage"]["completion_tokens"] if ok else 0
            except requests.RequestException:
                ok, n = False, 0
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - started)
                    tokens[0] += n
                else:
                    errors[0] += 1

    started = time.time()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - started
    lat = sorted(latencies)
    return {
        "requests": len(lat),
        "errors": errors[0],
        "tokens_per_second": round(tokens[0] / wall, 2),
        "requests_per_second": round(len(lat) / wall, 3),
        "p50_seconds": round(statistics.median(lat), 3) if lat else None,
        "p99_seconds": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 3) if lat else None,
    }


NAIVE_SERVER = r"""
import json, sys, threading, torch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
sys.path.insert(0, sys.argv[3])
from peft import PeftModel
from specialist.adapters import read_manifest
from specialist.base_models import DEFAULT_BASE_MODEL, load_model, load_tokenizer, resolve_base_model
from specialist.prompt_format import FRAME_STOPS, cut_at_frame
torch.set_num_threads(int(sys.argv[4]))
base = resolve_base_model(DEFAULT_BASE_MODEL)
tok = load_tokenizer(base)
adapters = json.loads(sys.argv[2])
model = None
prompts = {}
for name, path in adapters.items():
    if model is None:
        model = PeftModel.from_pretrained(load_model(base), path, adapter_name=name)
    else:
        model.load_adapter(path, adapter_name=name)
    prompts[name] = next(iter(read_manifest(path).tasks.values()))
model.eval()
lock = threading.Lock()
class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        with lock:  # one request at a time: the naive server
            model.set_adapter(body["task"])
            ids = tok(prompts[body["task"]].render(body["input"]), return_tensors="pt")
            with torch.no_grad():
                # The same stop rule as ours: transformers' own stop_strings on the frame's markers.
                out = model.generate(**ids, max_new_tokens=body["parameters"]["max_new_tokens"], do_sample=False, pad_token_id=tok.pad_token_id,
                                     stop_strings=list(FRAME_STOPS), tokenizer=tok)
        n = out.shape[1] - ids["input_ids"].shape[1]
        text = cut_at_frame(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))[0]
        payload = json.dumps({"output": text, "usage": {"completion_tokens": int(n)}}).encode()
        self.send_response(200); self.send_header("content-type", "application/json"); self.end_headers(); self.wfile.write(payload)
class Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default backlog of 5 resets connections when many clients connect at once
Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--clients",
        type=int,
        nargs="+",
        default=[8, 32],
        help="closed-loop client counts, each run against every server",
    )
    parser.add_argument("--seconds", type=float, default=20, help="per configuration")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each server")
    parser.add_argument("--task", default=TASK, help="the SuperNI task every adapter is made for")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "serve_load.json")
    parser.add_argument("--no-vllm", action="store_true", help="leave out both vLLM configurations")
    args = parser.parse_args()
    args.clients = sorted(set(args.clients))

    from specialist.adapters import Registry

    report: dict = {
        "task": args.task,
        "clients": args.clients,
        "seconds": args.seconds,
        "max_new_tokens": args.max_new_tokens,
        "threads": args.threads,
        "by_clients": {str(c): {} for c in args.clients},
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        adapters = make_adapters(root / "adapters", 9, args.task)
        registry = Registry(root / "home")
        for i, path in enumerate(adapters[:8]):
            registry.add(path, f"t{i}", skip_gate=True, actor="benchmark")
        prompts = prompts_per_adapter(8, args.task)

        batch = str(max(args.clients))  # room for every client: C, not a server setting, bounds the batch
        serve_args = ["--num-threads", str(args.threads), "--max-batch-size", batch]
        # Its output goes nowhere; SIGTERM and a wait at the end.
        with LiveServer(root / "home", ADMIN_TOKEN, serve_args, ready_timeout=300) as ours:
            url = ours.url
            closed_loop(url, ["t0"], prompts, 2, 5, args.max_new_tokens)  # warm-up
            for c in args.clients:
                for k in (1, 4, 8):
                    result = closed_loop(
                        url, [f"t{i}" for i in range(k)], prompts, c, args.seconds, args.max_new_tokens
                    )
                    report["by_clients"][str(c)][f"ours_{k}_adapters"] = result
                    print(f"{c} clients, ours, {k} adapter(s): {result}", flush=True)
            # Hot load: register a new version and promote it through the admin API; time until it serves.
            registry.add(adapters[8], "t0", skip_gate=True, actor="benchmark", promote=False)
            started = time.perf_counter()
            r = requests.post(
                f"{url}/admin/promote",
                json={"task": "t0", "version": 2},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=60,
            )
            report["hot_load_seconds"] = round(time.perf_counter() - started, 3)
            assert r.json()["serving_version"] == 2, r.text
            print(f"hot load: {report['hot_load_seconds']} s", flush=True)
            requests.post(
                f"{url}/admin/promote",
                json={"task": "t0", "version": 1},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=60,
            ).raise_for_status()

        if not args.no_vllm:
            run_vllm(report, args, root, adapters[:8], prompts)

        port = free_port()
        naive_url = f"http://127.0.0.1:{port}"
        mapping = json.dumps({f"t{i}": str(p) for i, p in enumerate(adapters[:8])})
        naive = subprocess.Popen(
            [sys.executable, "-c", NAIVE_SERVER, str(port), mapping, str(REPO), str(args.threads)],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_ready(naive_url, naive, path="/")
            closed_loop(naive_url, ["t0"], prompts, 1, 5, args.max_new_tokens)  # warm-up
            for c in args.clients:
                result = closed_loop(
                    naive_url, [f"t{i}" for i in range(8)], prompts, c, args.seconds, args.max_new_tokens
                )
                report["by_clients"][str(c)]["naive_8_adapters"] = result
                print(f"{c} clients, naive, 8 adapters: {result}", flush=True)
        finally:
            naive.send_signal(signal.SIGTERM)
            naive.wait(timeout=60)

    for c, runs in report["by_clients"].items():
        one, eight, naive_tps = (
            runs[k]["tokens_per_second"] for k in ("ours_1_adapters", "ours_8_adapters", "naive_8_adapters")
        )
        runs["ratio_8_vs_1_adapters"] = _ratio(eight, one)
        runs["ratio_ours_vs_naive_8_adapters"] = _ratio(eight, naive_tps)
        if "raw_vllm_8_adapters" in runs:
            ours_vllm, raw = (
                runs["ours_vllm_8_adapters"]["tokens_per_second"],
                runs["raw_vllm_8_adapters"]["tokens_per_second"],
            )
            runs["ratio_ours_vllm_vs_raw_vllm"] = _ratio(ours_vllm, raw)
            runs["ratio_local_vs_vllm_backend"] = _ratio(eight, ours_vllm)
        print(f"{c} clients: " + ", ".join(f"{k} {v}x" for k, v in runs.items() if k.startswith("ratio_")))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    plot(report, args.out.with_suffix(".png"))
    print(f"-> {args.out} (+ .md, .png)")
    return 0


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def run_vllm(report: dict, args, root: Path, adapters: list[Path], prompts: dict[str, list[str]]) -> None:
    """Ours on the vLLM backend, then vLLM's own server with the same adapters and engine settings."""
    from service.config import ServeConfig
    from service.router import task_prompt
    from service.vllm.process import engine_command, vllm_python
    from specialist.base_models import DEFAULT_BASE_MODEL, resolve_base_model

    engine = ["--vllm-max-lora-rank", str(LORA_RANK), "--vllm-max-loras", "8", "--num-threads", str(args.threads)]
    with LiveServer(root / "home", ADMIN_TOKEN, ["--backend", "vllm", *engine], ready_timeout=600) as ours:
        closed_loop(ours.url, ["t0"], prompts, 2, 5, args.max_new_tokens)  # warm-up
        for c in args.clients:
            result = closed_loop(ours.url, [f"t{i}" for i in range(8)], prompts, c, args.seconds, args.max_new_tokens)
            report["by_clients"][str(c)]["ours_vllm_8_adapters"] = result
            print(f"{c} clients, ours on vLLM, 8 adapters: {result}", flush=True)

    config = ServeConfig(backend="vllm", vllm_max_lora_rank=LORA_RANK, vllm_max_loras=8, num_threads=args.threads)
    port = free_port()
    import torch

    cuda = torch.cuda.is_available()  # as our backend decides for its own engine
    command = engine_command(vllm_python(config), resolve_base_model(DEFAULT_BASE_MODEL), config, port, cuda)
    command += ["--lora-modules", *(f"t{i}={path}" for i, path in enumerate(adapters))]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), VLLM_CPU_KVCACHE_SPACE=str(config.vllm_kv_cache_gb))
    raw = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, raw, path="/health", timeout=600)
        rendered = {f"t{i}": task_prompt(path, args.task) for i, path in enumerate(adapters)}
        closed_loop(url, ["t0"], prompts, 2, 5, args.max_new_tokens, rendered)  # warm-up
        for c in args.clients:
            result = closed_loop(url, list(rendered), prompts, c, args.seconds, args.max_new_tokens, rendered)
            report["by_clients"][str(c)]["raw_vllm_8_adapters"] = result
            print(f"{c} clients, raw vLLM, 8 adapters: {result}", flush=True)
    finally:
        raw.send_signal(signal.SIGTERM)
        raw.wait(timeout=60)


CONFIGS = [
    ("ours_1_adapters", "ours (local), traffic on 1 adapter"),
    ("ours_4_adapters", "ours (local), traffic on 4 adapters"),
    ("ours_8_adapters", "ours (local), traffic on 8 adapters"),
    ("ours_vllm_8_adapters", "ours (vLLM backend), 8 adapters"),
    ("raw_vllm_8_adapters", "raw vLLM server, 8 adapters"),
    ("naive_8_adapters", "naive server, 8 adapters"),
]


def markdown(report: dict) -> str:
    lines = [
        f"# Serving under load: {report['task']}",
        "",
        f"{report['seconds']:g} s per configuration, max_new_tokens {report['max_new_tokens']}, "
        f"{report['threads']} torch threads per server; adapter hot-load {report.get('hot_load_seconds')} s.",
        "",
        "| clients | configuration | requests | errors | tokens/s | p50 s | p99 s |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for c, runs in report["by_clients"].items():
        for key, label in CONFIGS:
            if key not in runs:
                continue
            r = runs[key]
            lines.append(
                f"| {c} | {label} | {r['requests']} | {r['errors']} | {r['tokens_per_second']} | {r['p50_seconds']} | {r['p99_seconds']} |"
            )
    lines += [
        "",
        "| clients | 8 vs 1 adapters | ours vs naive (8 adapters) | ours-on-vLLM vs raw vLLM | local vs vLLM backend |",
        "|---:|---:|---:|---:|---:|",
    ]
    for c, runs in report["by_clients"].items():
        ratios = (
            "ratio_8_vs_1_adapters",
            "ratio_ours_vs_naive_8_adapters",
            "ratio_ours_vllm_vs_raw_vllm",
            "ratio_local_vs_vllm_backend",
        )
        lines.append(f"| {c} | " + " | ".join(f"{runs.get(k)}x" if runs.get(k) else "-" for k in ratios) + " |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clients = list(report["by_clients"])
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(CONFIGS)
    for k, (key, label) in enumerate(CONFIGS):
        values = [report["by_clients"][c].get(key, {}).get("tokens_per_second", 0) for c in clients]
        ax.bar([i + k * width for i in range(len(clients))], values, width, label=label)
    ax.set_xticks([i + width * (len(CONFIGS) - 1) / 2 for i in range(len(clients))], [f"{c} clients" for c in clients])
    ax.set_ylabel("generated tokens/s")
    ax.set_title(f"Closed-loop load, {report['task']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
