"""The GPU path in one run: bf16 LoRA training (tokens/s, MFU), evaluation, and the serving benchmark on both
backends, written as one report.

    make gpu-check      # = .venv/bin/python scripts/gpu_check.py [--steps 60] [--out runs/gpu-check]

On a CUDA machine (it refuses to run without one unless --device cpu, which runs the same stages on the CPU in
fp32: the figures then say nothing about a GPU). MFU uses the 4·N convention of LoRA training: about 4 FLOPs
per parameter per token (forward 2N, backward through the activations 2N; no weight gradients for the frozen
base), over the GPU's dense bf16 peak (a table of known GPUs, or --peak-tflops).
Writes OUT/gpu_check.json and OUT/gpu_check.md; each stage's own outputs are beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TASK = "task363_sst2_polarity_classification"
# Dense bf16 peak TFLOPS (no sparsity) from the vendors' data sheets, by a name torch reports.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0, "T4": 65.0}


class TrainStage(BaseModel):
    device: str
    dtype: str
    steps: int
    tokens: int
    tokens_per_second: float
    wall_seconds: float
    parameters: int
    peak_tflops: float | None
    mfu: float | None  # 4·N·tokens/s over the peak; None where the peak is not known


class EvalStage(BaseModel):
    instances: int
    seconds: float
    scores: dict[str, float]  # model -> the task's metric


class GpuCheck(BaseModel):
    gpu: str
    torch: str
    train: TrainStage
    eval: EvalStage
    serve: dict  # benchmarks/serve_load.py's own report
    seconds: float


def peak_tflops(gpu_name: str, given: float | None) -> float | None:
    if given:
        return given
    return next((tflops for key, tflops in PEAK_BF16_TFLOPS.items() if key in gpu_name), None)


def mfu(parameters: int, tokens_per_second: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation under the 4·N convention (a fraction of the peak)."""
    return round(4 * parameters * tokens_per_second / (peak * 1e12), 4) if peak else None


def _specialist(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO, check=True)


def train(out: Path, device: str, steps: int, peak: float | None) -> TrainStage:
    from specialist.adapters import read_manifest
    from specialist.base_models import DEFAULT_BASE_MODEL, load_model, resolve_base_model

    _specialist(
        "train", "--task", TASK, "--instances-per-task", "256", "--generalist-ratio", "1.0", "--max-steps", str(steps),
        "--batch-size", "16", "--learning-rate", "1e-3", "--device", device, "--out", str(out), "--no-progress",
    )  # fmt: skip
    record = read_manifest(out).training
    parameters = sum(p.numel() for p in load_model(resolve_base_model(DEFAULT_BASE_MODEL), "cpu").parameters())
    return TrainStage(
        device=record.device,
        dtype=record.dtype,
        steps=record.steps,
        tokens=record.tokens,
        tokens_per_second=record.tokens_per_second,
        wall_seconds=record.wall_seconds,
        parameters=parameters,
        peak_tflops=peak,
        mfu=mfu(parameters, record.tokens_per_second, peak),
    )


def evaluate(adapter: Path, out: Path, device: str, instances: int) -> EvalStage:
    started = time.perf_counter()
    _specialist(
        "eval", "--adapter", f"specialist={adapter}", "--base", "--task", TASK, "--eval-instances", str(instances),
        "--device", device, "--out", str(out), "--no-progress",
    )  # fmt: skip
    scores = json.loads((out / "scores.json").read_text())
    return EvalStage(instances=instances, seconds=round(time.perf_counter() - started, 1), scores=_task_scores(scores))


def _task_scores(scores: dict) -> dict[str, float]:
    """model -> its score on the task, from `specialist eval`'s scores.json (eval.report.scores_dict)."""
    return {model: float(entry["tasks"][TASK]["score"]) for model, entry in scores["models"].items()}


def serve(out: Path, seconds: float) -> dict:
    report = out / "serve_load.json"
    subprocess.run(
        [sys.executable, "benchmarks/serve_load.py", "--seconds", str(seconds), "--out", str(report)],
        cwd=REPO,
        check=True,
    )
    return json.loads(report.read_text())


def markdown(check: GpuCheck) -> str:
    t, e = check.train, check.eval
    lines = [
        f"# GPU check: {check.gpu} (torch {check.torch}), {check.seconds:.0f} s in all",
        "",
        "| stage | figure |",
        "|---|---|",
        f"| train ({t.device}, {t.dtype}, {t.steps} steps) | {t.tokens_per_second:,.0f} tokens/s; MFU "
        f"{f'{t.mfu:.1%}' if t.mfu is not None else 'n/a (unknown peak)'} (4·N, N = {t.parameters / 1e6:.0f}M, "
        f"peak {t.peak_tflops} TFLOPS) |",
        f"| eval ({e.instances} instances, {e.seconds} s) | "
        + ", ".join(f"{m} {v:.1f}" for m, v in sorted(e.scores.items()))
        + " |",
    ]
    for clients, runs in check.serve.get("by_clients", {}).items():
        figures = ", ".join(
            f"{key} {run['tokens_per_second']} tok/s" for key, run in runs.items() if isinstance(run, dict)
        )
        lines.append(f"| serve, {clients} clients | {figures} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu for a dry run of every stage")
    parser.add_argument("--steps", type=int, default=60, help="training steps")
    parser.add_argument("--eval-instances", type=int, default=100)
    parser.add_argument("--serve-seconds", type=float, default=15, help="per serving configuration")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, if not known")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "gpu-check")
    args = parser.parse_args(argv)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu-check: no CUDA device is visible; run it on a GPU machine (or --device cpu for a dry run)")
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    trained = train(args.out / "adapter", args.device, args.steps, peak_tflops(gpu, args.peak_tflops))
    print(f"train: {trained.model_dump()}", flush=True)
    evaluated = evaluate(args.out / "adapter", args.out / "eval", args.device, args.eval_instances)
    print(f"eval: {evaluated.model_dump()}", flush=True)
    served = serve(args.out, args.serve_seconds)
    check = GpuCheck(
        gpu=gpu,
        torch=torch.__version__,
        train=trained,
        eval=evaluated,
        serve=served,
        seconds=round(time.perf_counter() - started, 1),
    )
    (args.out / "gpu_check.json").write_text(check.model_dump_json(indent=2) + "\n")
    (args.out / "gpu_check.md").write_text(markdown(check))
    print(markdown(check))
    print(f"-> {args.out / 'gpu_check.json'} (+ .md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
