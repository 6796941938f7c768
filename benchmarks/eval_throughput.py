"""Evaluation throughput: our runner vs a naive loop, on the same adapters and instances, in one run.

    .venv/bin/python benchmarks/eval_throughput.py [--adapter DIR --adapter DIR] [--instances 100] [--threads 2]

Both score the base model plus two adapters on the held-out instances of a real SuperNI task with the packaged
SmolLM2 default. The naive loop calls `generate` once per instance after `set_adapter` (or with the adapter
disabled for the base model); ours decodes mixed-adapter batches and computes the task's shared prompt
prefix (definition + demonstrations) once per adapter (inference.prefix_cache). Same greedy decoding,
same `max_new_tokens`, same stop rule (the naive loop passes the frame's markers to `generate(stop_strings=...)`,
transformers' own way to stop on text). Prints instances/s of each and the ratio, checks the predictions agree, writes JSON
(benchmarks/results/eval_throughput.json). Without --adapter, two LoRA adapters with random (non-zero)
weights are made for the run: throughput does not depend on what the weights learned.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from eval.benchmarks import task_benchmark  # noqa: E402
from eval.runner import max_new_tokens_for, run_eval  # noqa: E402
from specialist.adapters.decision import BASE  # noqa: E402
from specialist.base_models import DEFAULT_BASE_MODEL, load_model, load_tokenizer, resolve_base_model  # noqa: E402
from specialist.paths import default_task_data  # noqa: E402
from specialist.prompt_format import FRAME_STOPS, cut_at_frame  # noqa: E402

TASK = "task363_sst2_polarity_classification"


def two_random_adapters(root: Path) -> dict[str, Path]:
    from specialist.testing import random_adapters

    return {p.name: p for p in random_adapters(root, [TASK, TASK])}


def peft_model(base_model, adapters: dict[str, Path]):
    """The base model wrapped by peft with every adapter loaded (the library's own way)."""
    from peft import PeftModel

    names = list(adapters)
    model = PeftModel.from_pretrained(base_model, adapters[names[0]], adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(adapters[name], adapter_name=name)
    return model.eval()


@torch.no_grad()
def naive_loop(base, adapters: dict[str, Path], bench, max_new_tokens: int) -> tuple[dict[str, list[str]], float]:
    """One `generate` per instance, switching the active adapter before each call (what a naive server does).
    Timed like the runner: model and adapter loading included."""
    started = time.perf_counter()
    tokenizer = load_tokenizer(base)
    model = peft_model(load_model(base, torch.device("cpu"), torch.float32), adapters)
    outputs: dict[str, list[str]] = {}
    for name in [BASE, *adapters]:
        outputs[name] = []
        for inst in bench.instances:
            ids = tokenizer(bench.prompt.render(inst.input), return_tensors="pt")
            options = dict(
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                stop_strings=list(FRAME_STOPS),
                tokenizer=tokenizer,
            )
            if name == BASE:
                with model.disable_adapter():
                    out = model.generate(**ids, **options)
            else:
                model.set_adapter(name)
                out = model.generate(**ids, **options)
            text = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
            outputs[name].append(cut_at_frame(text, final=True)[0].strip())  # as eval cuts a finished generation
    return outputs, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--adapter", action="append", default=[], type=Path, help="adapter dir (give two; default: two random ones)"
    )
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "eval_throughput.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    base = resolve_base_model(DEFAULT_BASE_MODEL)
    bench = task_benchmark(default_task_data(), TASK, limit=args.instances)
    with tempfile.TemporaryDirectory() as tmp:
        adapters = {p.name: p for p in args.adapter} if args.adapter else two_random_adapters(Path(tmp))
        max_new = max_new_tokens_for(load_tokenizer(base), bench)

        started = time.perf_counter()
        run = run_eval(base, adapters, [bench], include_base=True, batch_size=args.batch_size, device="cpu")
        ours_seconds = time.perf_counter() - started
        naive_outputs, naive_seconds = naive_loop(base, adapters, bench, max_new)

    total = len(bench.instances) * (len(adapters) + 1)
    pairs = [
        (name, inst.id, a, b)
        for name in naive_outputs
        for inst, a, b in zip(bench.instances, naive_outputs[name], run.predictions[name][TASK])
    ]
    agree = sum(a == b for _, _, a, b in pairs)
    ours_rate, naive_rate = total / ours_seconds, total / naive_seconds
    report = {
        "task": TASK,
        "models": [BASE, *adapters],
        "instances_per_model": len(bench.instances),
        "max_new_tokens": max_new,
        "threads": args.threads,
        "ours": {
            "seconds": round(ours_seconds, 2),
            "instances_per_second": round(ours_rate, 2),
            "batch_size": args.batch_size,
        },
        "naive": {"seconds": round(naive_seconds, 2), "instances_per_second": round(naive_rate, 2)},
        "speedup": round(ours_rate / naive_rate, 2),
        "predictions_identical": f"{agree}/{total}",
        "first_differences": [{"model": name, "id": id_, "naive": a, "ours": b} for name, id_, a, b in pairs if a != b][
            :10
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"speedup (runner / naive loop, instances/s): {report['speedup']:.2f}x -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
