"""Real-data check: SmolLM2 on one SuperNI classification task, with and without generalist data.

    .venv/bin/python scripts/real_data_check.py [--task T] [--instances 64] [--epochs 3] [--out runs/real_data_check]

Trains adapters through the `specialist train` CLI (generalist ratio 0 and 1 for the same epochs, plus a
specialist-only control with as many steps as the mixed run, since a 1:1 mixture doubles the steps), then
scores them and the base model on the task's 100 held-out instances in one mixed-adapter generation pass.
Writes `<out>/real_data_check.json` and `.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from eval.benchmarks import task_benchmark  # noqa: E402
from eval.runner import run_eval  # noqa: E402
from specialist.adapters import read_manifest  # noqa: E402
from specialist.adapters.decision import BASE  # noqa: E402
from specialist.base_models import DEFAULT_BASE_MODEL, resolve_base_model  # noqa: E402
from specialist.paths import default_generalist_data, default_task_data  # noqa: E402


def _train(args, name: str, ratio: str, length: list[str]) -> Path:
    path = args.out / name
    if not path.exists():  # reuse an adapter from an earlier run of this script
        cmd = [
            sys.executable,
            "-m",
            "cli.main",
            "train",
            "--task",
            args.task,
            "--task-data",
            str(default_task_data()),
            "--generalist-data",
            str(default_generalist_data()),
            "--instances-per-task",
            str(args.instances),
            "--generalist-ratio",
            ratio,
            *length,
            "--seed",
            args.seed,
            "--out",
            str(path),
        ]
        print("$", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True, cwd=REPO)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="task363_sst2_polarity_classification")
    parser.add_argument("--instances", type=int, default=64)
    parser.add_argument("--epochs", default="3")
    parser.add_argument("--ratios", default="0,1")
    parser.add_argument("--seed", default="1")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "real_data_check")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    adapters = {}
    runs = [(f"ratio{r}", r, ["--epochs", args.epochs]) for r in args.ratios.split(",")]
    for name, ratio, length in runs:
        adapters[name] = _train(args, name, ratio, length)
    most_steps = max(read_manifest(p).training.steps for p in adapters.values())
    control = f"ratio0-{most_steps}steps"
    adapters[control] = _train(args, control, "0", ["--max-steps", str(most_steps)])

    base = resolve_base_model(DEFAULT_BASE_MODEL)
    started = time.time()
    run = run_eval(base, adapters, [task_benchmark(default_task_data(), args.task)])
    eval_seconds = round(time.time() - started, 1)

    rows = []
    for name in run.models:
        scores = run.scores[name][args.task]
        row = {
            "model": "base (no adapter)" if name == BASE else name,
            "exact_match": scores["exact_match"],
            "rougeL": scores["rougeL"],
        }
        if name in adapters:
            m = read_manifest(adapters[name])
            row.update(
                generalist_examples=m.mixture.generalist_examples,
                specialist_examples=m.mixture.specialist_examples,
                steps=m.training.steps,
                final_loss=m.training.final_loss,
                tokens_per_second=m.training.tokens_per_second,
                train_seconds=m.training.wall_seconds,
            )
        rows.append(row)
    report = {
        "task": args.task,
        "instances_per_task": args.instances,
        "epochs": float(args.epochs),
        "held_out": 100,
        "rows": rows,
        "eval_seconds": eval_seconds,
        "samples": {name: run.predictions[name][args.task][:8] for name in run.models},
    }
    (args.out / "real_data_check.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"SmolLM2-135M-Instruct, `{args.task}`, {args.instances} training instances, {args.epochs} epochs, "
        f"scored on the task's 100 held-out instances (exact match / ROUGE-L, official SuperNI definitions).",
        "",
        "| model | generalist examples | steps | exact match | ROUGE-L |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r.get('generalist_examples', '-')} | {r.get('steps', '-')} | {r['exact_match']:.1f} | {r['rougeL']:.1f} |"
        )
    (args.out / "real_data_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
