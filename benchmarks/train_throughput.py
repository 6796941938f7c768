"""Training throughput: our trainer vs a plain HF `Trainer` + peft baseline, in one run.

    .venv/bin/python benchmarks/train_throughput.py [--steps 12] [--batch-size 8] [--threads 2]
    .venv/bin/python benchmarks/train_throughput.py --memory [--steps 3]   # gradient checkpointing: peak RSS, cost

Same base model (the packaged SmolLM2 default), same real SuperNI + Alpaca mixture, same LoRA config,
batch size, learning rate and step count. The baseline pads each random batch to its longest member and
computes logits at every position (what `Trainer` + `DataCollatorForSeq2Seq` do); ours groups batches by
length and projects only response positions onto the vocabulary. Throughput counts unpadded tokens.
Prints both and the ratio, writes JSON (benchmarks/results/train_throughput.json). On a GPU it adds MFU,
taking LoRA's cost as 4·N FLOPs per token (forward 2N, backward ~2N: no weight gradients for frozen N).
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

from specialist.base_models import DEFAULT_BASE_MODEL, load_model, load_tokenizer, pick_device, resolve_base_model  # noqa: E402
from specialist.config import LoraSettings, MixtureConfig, OptimSettings  # noqa: E402
from training.batching import EncodedExample, encode_examples  # noqa: E402
from training.loop import plan_steps, train_loop  # noqa: E402
from training.lora import attach_lora  # noqa: E402
from training.mixture import build_mixture  # noqa: E402

# Four SuperNI tasks of different shapes (classification, QA, generation) so lengths vary as in real use.
TASKS = [
    "task363_sst2_polarity_classification",
    "task1399_obqa_answer_generation",
    "task288_gigaword_summarization",
    "task610_conllpp_ner",
]
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16
LONG_TASK = "task522_news_editorial_summary"  # editorials of ~900 words: sequences up to max_seq_len 1024

# One `specialist train` in its own process, printing its peak RSS: each run's memory is its own.
MEASURED_TRAIN = """
import resource, sys
from cli.main import main
code = main(sys.argv[1:])
print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
sys.exit(code)
"""


def memory_comparison(args) -> dict:
    """`specialist train` on a long-input task, batch 8, sequences up to 1024 tokens, with and without
    --gradient-checkpointing (each in its own process, in alternating order): peak RSS and tokens/s."""
    import subprocess

    from specialist.adapters import read_manifest

    runs: dict[str, list[dict]] = {"plain": [], "checkpointed": []}
    with tempfile.TemporaryDirectory() as tmp:
        order = [("plain", []), ("checkpointed", ["--gradient-checkpointing"])]
        for repeat in range(args.repeats):
            for name, flags in order if repeat % 2 == 0 else order[::-1]:
                out = Path(tmp) / f"{name}-{repeat}"
                command = [
                    sys.executable, "-c", MEASURED_TRAIN, "train", "--task", LONG_TASK, "--instances-per-task", "32",
                    "--generalist-count", "0", "--max-steps", str(args.steps), "--batch-size", str(args.batch_size),
                    "--max-seq-len", "1024", "--num-threads", str(args.threads), "--device", args.device,
                    "--out", str(out), "--no-progress", *flags,
                ]  # fmt: skip
                done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
                peak_kb = int(done.stdout.rsplit("MAXRSS_KB", 1)[1].split()[0])
                record = read_manifest(out).training
                runs[name].append(
                    {
                        "peak_rss_gb": round(peak_kb / 2**20, 2),
                        "tokens_per_second": record.tokens_per_second,
                        "tokens": record.tokens,
                    }
                )
                print(f"{name} (run {repeat + 1}): {runs[name][-1]}", flush=True)
    median = lambda rows, key: sorted(r[key] for r in rows)[len(rows) // 2]  # noqa: E731
    summary = {name: {k: median(rows, k) for k in ("peak_rss_gb", "tokens_per_second")} for name, rows in runs.items()}
    return {
        "task": LONG_TASK,
        "batch_size": args.batch_size,
        "max_seq_len": 1024,
        "steps": args.steps,
        "runs": runs,
        "median": summary,
        "memory_ratio": round(summary["checkpointed"]["peak_rss_gb"] / summary["plain"]["peak_rss_gb"], 3),
        "speed_ratio": round(summary["checkpointed"]["tokens_per_second"] / summary["plain"]["tokens_per_second"], 3),
    }


def ours(model, examples: list[EncodedExample], opt: OptimSettings, pad_id: int, device) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as work:
        state = train_loop(
            model,
            examples,
            opt,
            plan_steps(len(examples), opt, None),
            seed=1,
            pad_id=pad_id,
            device=device,
            work_dir=Path(work),
            checkpoint_every=10**9,
            resume=False,
            progress=True,
        )
    return state.tokens, state.elapsed


def hf_trainer(model, tokenizer, examples: list[EncodedExample], opt: OptimSettings, device) -> tuple[int, float]:
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    rows = [
        {"input_ids": ex.input_ids, "labels": [-100] * ex.prompt_len + ex.input_ids[ex.prompt_len :]} for ex in examples
    ]
    pad = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100)
    seen = {"tokens": 0}

    def collate(batch):
        out = pad(batch)
        seen["tokens"] += int(out["attention_mask"].sum())
        return out

    with tempfile.TemporaryDirectory() as work:
        args = TrainingArguments(
            output_dir=work,
            per_device_train_batch_size=opt.batch_size,
            max_steps=opt.max_steps,
            learning_rate=opt.learning_rate,
            warmup_steps=int(opt.warmup_ratio * opt.max_steps),
            lr_scheduler_type="cosine",
            max_grad_norm=opt.max_grad_norm,
            logging_steps=10**6,
            save_strategy="no",
            report_to=[],
            use_cpu=device.type == "cpu",
            bf16=device.type == "cuda",
            dataloader_num_workers=0,
            remove_unused_columns=False,
            seed=1,
            disable_tqdm=False,
        )
        trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate)
        started = time.perf_counter()
        trainer.train()
        elapsed = time.perf_counter() - started
    return seen["tokens"], elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--instances-per-task", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads for both runs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="JSON report (default: benchmarks/results/)")
    parser.add_argument("--memory", action="store_true", help="gradient checkpointing's memory and speed instead")
    parser.add_argument("--repeats", type=int, default=2, help="--memory: runs of each, in alternating order")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results_dir = REPO / "benchmarks" / "results"
    if args.memory:
        report = memory_comparison(args)
        out = args.out or results_dir / "train_memory.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report["median"], indent=2))
        print(f"checkpointed / plain: memory {report['memory_ratio']}x, tokens/s {report['speed_ratio']}x -> {out}")
        return 0
    args.out = args.out or results_dir / "train_throughput.json"

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    device, dtype = pick_device(args.device)
    base = resolve_base_model(DEFAULT_BASE_MODEL)
    tokenizer = load_tokenizer(base)
    mixture = build_mixture(
        MixtureConfig(task=TASKS, instances_per_task=args.instances_per_task, generalist_ratio=1.0, seed=1)
    )
    examples, _ = encode_examples(tokenizer, mixture.examples, max_seq_len=1024)
    opt = OptimSettings(batch_size=args.batch_size, max_steps=args.steps, learning_rate=2e-4)
    lora = LoraSettings()

    results = {}
    for name in ("hf_trainer", "ours"):
        torch.manual_seed(1)
        model = attach_lora(load_model(base, device, dtype), lora, seed=1)
        tokens, seconds = (
            hf_trainer(model, tokenizer, examples, opt, device)
            if name == "hf_trainer"
            else ours(model, examples, opt, tokenizer.pad_token_id, device)
        )
        results[name] = {
            "tokens": tokens,
            "seconds": round(seconds, 2),
            "tokens_per_second": round(tokens / seconds, 1),
        }
        del model

    ratio = results["ours"]["tokens_per_second"] / results["hf_trainer"]["tokens_per_second"]
    report = {
        "model": base.id,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "threads": args.threads,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "mixture": {
            "tasks": TASKS,
            "specialist": mixture.record.specialist_examples,
            "generalist": mixture.record.generalist_examples,
        },
        "results": results,
        "speedup": round(ratio, 2),
    }
    if device.type == "cuda":
        n_params = sum(p.numel() for p in load_model(base, device, dtype).parameters())
        gpu = torch.cuda.get_device_name(device)
        peak = next((v for k, v in PEAK_TFLOPS.items() if k in gpu), None)
        report["gpu"] = gpu
        for r in results.values():
            achieved = 4 * n_params * r["tokens_per_second"]
            r["tflops"] = round(achieved / 1e12, 2)
            r["mfu"] = round(achieved / (peak * 1e12), 4) if peak else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"speedup (ours / HF Trainer, tokens/s): {ratio:.2f}x  -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
