"""Training throughput against the best-configured peers, and gradient checkpointing's memory.

    .venv/bin/python benchmarks/train_throughput.py [--steps 10] [--warmup-steps 2] [--repeats 3] [--batch-size 8]
    .venv/bin/python benchmarks/train_throughput.py --memory [--steps 3] [--batch-size 8]

Throughput: ours, transformers' `Trainer` with `train_sampling_strategy="group_by_length"` (its documented
setting for variable-length data) and TRL's `SFTTrainer` with padding-free batches and completion-only loss.
Same base model (the packaged SmolLM2 default), same tokenized SuperNI + Alpaca mixture, same LoRA config,
batch size, learning rate and dtype. Every run is its own process on the same allocator, warms up before the
timed steps (a process's first steps run slower), and the order rotates each round; the report gives each
trainer's median and range of tokens/s over the rounds. Tokens count the examples' tokens, not padding: ours
runs a prompt prefix that rows share once, so it runs fewer positions than it counts (`positions_per_token`).
On a GPU it adds MFU, taking LoRA's cost as 4*N FLOPs per token (forward 2N, backward ~2N: no weight gradients
for frozen N), and peak memory.
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

# `specialist train` as a user runs it (`python -m cli.main` is the same entry: on the system allocator, or
# re-executed under jemalloc when SPECIALIST_ALLOCATOR=jemalloc), each run in its own process; peak RSS from
# wait4's rusage of that process.
MEMORY_RUNS = {
    "plain": ([], {}),
    "checkpointed": (["--gradient-checkpointing"], {}),
    "checkpointed, jemalloc": (["--gradient-checkpointing"], {"SPECIALIST_ALLOCATOR": "jemalloc"}),
}


def memory_comparison(args) -> dict:
    """`specialist train` on a long-input task, sequences up to 1024 tokens, with and without
    --gradient-checkpointing and with the system allocator: peak RSS and tokens/s, one process per run."""
    import subprocess

    from specialist.adapters import read_manifest

    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.memory_runs:
            flags, env = MEMORY_RUNS[name]
            out = Path(tmp) / f"run-{len(runs)}"
            command = [
                sys.executable, "-m", "cli.main", "train", "--task", LONG_TASK,
                "--instances-per-task", "32", "--generalist-count", "0", "--max-steps", str(args.steps),
                "--batch-size", str(args.batch_size), "--max-seq-len", "1024", "--num-threads", str(args.threads),
                "--device", args.device, "--out", str(out), "--no-progress", *flags,
            ]  # fmt: skip
            proc = subprocess.Popen(command, cwd=REPO, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                runs[name] = {"exit_code": proc.returncode}  # -9: killed by the kernel's OOM killer
            else:
                record = read_manifest(out).training
                runs[name] = {
                    "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2),
                    "tokens_per_second": record.tokens_per_second,
                }
            print(f"{name}: {runs[name]}", flush=True)
    return {
        "task": LONG_TASK,
        "batch_size": args.batch_size,
        "max_seq_len": 1024,
        "steps": args.steps,
        "peak_rss_gb": {name: run.get("peak_rss_gb") for name, run in runs.items()},
        "runs": runs,
    }


def _timed_window(step_ends: list[float], step_tokens: list[int], warmup: int) -> tuple[int, float]:
    """Tokens and seconds of the steps after the warm-up ones (the first steps of a process run slower)."""
    return sum(step_tokens[warmup:]), step_ends[-1] - step_ends[warmup - 1] if warmup else step_ends[-1]


def run_ours(model, tokenizer, examples: list[EncodedExample], opt: OptimSettings, device, warmup: int) -> dict:
    step_ends, step_tokens, seen = [], [], [0]

    def on_step(state, plan):
        step_ends.append(time.perf_counter())
        step_tokens.append(state.tokens - seen[0])
        seen[0] = state.tokens

    with tempfile.TemporaryDirectory() as work:
        state = train_loop(
            model, examples, opt, plan_steps(len(examples), opt, None), seed=1, pad_id=tokenizer.pad_token_id,
            device=device, work_dir=Path(work), checkpoint_every=10**9, resume=False, progress=False, on_step=on_step,
        )  # fmt: skip
    tokens, seconds = _timed_window(step_ends, step_tokens, warmup)
    return {"tokens": tokens, "seconds": seconds, "positions_per_token": round(state.positions / state.tokens, 3)}


class _StepClock:
    """A TrainerCallback's worth of timing: when each optimizer step ends."""

    def __init__(self):
        from transformers import TrainerCallback

        clock = self

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                clock.ends.append(time.perf_counter())

        self.ends: list[float] = []
        self.callback = Callback()


def run_hf_trainer(model, tokenizer, examples: list[EncodedExample], opt: OptimSettings, device, warmup: int) -> dict:
    """transformers' Trainer as its docs set it up for variable-length SFT: length-grouped batches."""
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    rows = [
        {"input_ids": ex.input_ids, "labels": [-100] * ex.prompt_len + ex.input_ids[ex.prompt_len :]} for ex in examples
    ]
    pad = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100)
    step_tokens, clock = [], _StepClock()

    def collate(batch):
        out = pad(batch)
        step_tokens.append(int(out["attention_mask"].sum()))
        return out

    with tempfile.TemporaryDirectory() as work:
        args = TrainingArguments(
            output_dir=work, per_device_train_batch_size=opt.batch_size, max_steps=opt.max_steps,
            learning_rate=opt.learning_rate, warmup_steps=int(opt.warmup_ratio * opt.max_steps),
            lr_scheduler_type="cosine", max_grad_norm=opt.max_grad_norm, logging_steps=10**6, save_strategy="no",
            report_to=[], use_cpu=device.type == "cpu", bf16=device.type == "cuda", dataloader_num_workers=0,
            remove_unused_columns=False, seed=1, disable_tqdm=True, train_sampling_strategy="group_by_length",
        )  # fmt: skip
        trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate, callbacks=[clock.callback])
        trainer.train()
    tokens, seconds = _timed_window(clock.ends, step_tokens[: len(clock.ends)], warmup)
    return {"tokens": tokens, "seconds": seconds}


def run_trl_sft(model, tokenizer, examples: list[EncodedExample], opt: OptimSettings, device, warmup: int) -> dict:
    """TRL's SFTTrainer in its most efficient setting that runs here: padding-free batches (one flattened
    sequence, position ids restarting per example) and completion-only loss; no gradient checkpointing (TRL's
    default turns it on: slower), our dtype."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    rows = [
        {"input_ids": ex.input_ids, "completion_mask": [0] * ex.prompt_len + [1] * (len(ex) - ex.prompt_len)}
        for ex in examples
    ]
    step_tokens, clock = [], _StepClock()
    with tempfile.TemporaryDirectory() as work:
        args = SFTConfig(
            output_dir=work, per_device_train_batch_size=opt.batch_size, max_steps=opt.max_steps,
            learning_rate=opt.learning_rate, warmup_steps=int(opt.warmup_ratio * opt.max_steps),
            lr_scheduler_type="cosine", max_grad_norm=opt.max_grad_norm, logging_steps=10**6, save_strategy="no",
            report_to=[], use_cpu=device.type == "cpu", bf16=device.type == "cuda", dataloader_num_workers=0,
            seed=1, disable_tqdm=True, padding_free=True, completion_only_loss=True, gradient_checkpointing=False,
            max_length=None, dataset_num_proc=None,  # the examples are already at most 1024 tokens
        )  # fmt: skip
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
            callbacks=[clock.callback],
        )  # fmt: skip
        collator = trainer.data_collator

        def counting(batch):
            out = collator(batch)
            step_tokens.append(int(out["input_ids"].numel()))  # padding-free: every position is a token
            return out

        trainer.data_collator = counting
        trainer.train()
    tokens, seconds = _timed_window(clock.ends, step_tokens[: len(clock.ends)], warmup)
    return {"tokens": tokens, "seconds": seconds}


TRAINERS = {"ours": run_ours, "hf_trainer_group_by_length": run_hf_trainer, "trl_sft_padding_free": run_trl_sft}


def one_run(args) -> dict:
    """One trainer, alone in this process: load, warm up, time the remaining steps."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    device, dtype = pick_device(args.device)
    base = resolve_base_model(DEFAULT_BASE_MODEL)
    tokenizer = load_tokenizer(base)
    mixture = build_mixture(
        MixtureConfig(task=TASKS, instances_per_task=args.instances_per_task, generalist_ratio=1.0, seed=1)
    )
    examples, _ = encode_examples(tokenizer, mixture.examples, max_seq_len=1024)
    opt = OptimSettings(batch_size=args.batch_size, max_steps=args.warmup_steps + args.steps, learning_rate=2e-4)
    torch.manual_seed(1)
    model = attach_lora(load_model(base, device, dtype), LoraSettings(), seed=1)
    result = TRAINERS[args.one](model, tokenizer, examples, opt, device, args.warmup_steps)
    result["tokens_per_second"] = round(result["tokens"] / result["seconds"], 1)
    result["seconds"] = round(result["seconds"], 2)
    result["examples"] = {
        "specialist": mixture.record.specialist_examples,
        "generalist": mixture.record.generalist_examples,
    }
    if device.type == "cuda":
        n_params = sum(p.numel() for p in model.parameters())
        gpu = torch.cuda.get_device_name(device)
        peak = next((v for k, v in PEAK_TFLOPS.items() if k in gpu), None)
        achieved = 4 * n_params * result["tokens_per_second"]
        result.update(
            gpu=gpu, tflops=round(achieved / 1e12, 2), mfu=round(achieved / (peak * 1e12), 4) if peak else None
        )
        result["peak_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return result


def compare(args) -> dict:
    """Every trainer in its own process, `repeats` rounds, the order rotated each round; median and range."""
    import statistics
    import subprocess

    from specialist.allocator import jemalloc_env

    names = list(TRAINERS)
    # Every trainer on the same allocator: the system's by default (what `python train.py` gets), so the ratio is
    # the trainers' own; --allocator jemalloc puts all of them on the one `specialist train` uses.
    env = dict(os.environ, SPECIALIST_ALLOCATOR="system")
    if args.allocator == "jemalloc":
        env = jemalloc_env({**env, "SPECIALIST_ALLOCATOR": "jemalloc"})
        if "jemalloc" not in env.get("LD_PRELOAD", ""):
            raise SystemExit("--allocator jemalloc: no libjemalloc on this machine (apt install libjemalloc2)")
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for repeat in range(args.repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in order:
            command = [
                sys.executable, __file__, "--one", name, "--steps", str(args.steps), "--warmup-steps",
                str(args.warmup_steps), "--batch-size", str(args.batch_size), "--instances-per-task",
                str(args.instances_per_task), "--threads", str(args.threads), "--device", args.device,
            ]  # fmt: skip
            done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                why = "killed by the kernel (out of memory?)" if done.returncode == -9 else done.stderr[-3000:]
                raise SystemExit(f"{name} failed (exit {done.returncode}): {why}")
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"round {repeat + 1}: {name}: {runs[name][-1]['tokens_per_second']} tokens/s", flush=True)
    summary = {}
    for name, rows in runs.items():
        speeds = [r["tokens_per_second"] for r in rows]
        summary[name] = {"median": statistics.median(speeds), "min": min(speeds), "max": max(speeds)}
    best_peer = max((n for n in names if n != "ours"), key=lambda n: summary[n]["median"])
    return {
        "model": DEFAULT_BASE_MODEL,
        "device": args.device,
        "threads": args.threads,
        "allocator": args.allocator,
        "batch_size": args.batch_size,
        "warmup_steps": args.warmup_steps,
        "timed_steps": args.steps,
        "repeats": args.repeats,
        "tasks": TASKS,
        "runs": runs,
        "tokens_per_second": summary,
        "best_peer": best_peer,
        "speedup_vs_best_peer": round(summary["ours"]["median"] / summary[best_peer]["median"], 2),
        "speedup_range": [
            round(summary["ours"]["min"] / summary[best_peer]["max"], 2),
            round(summary["ours"]["max"] / summary[best_peer]["min"], 2),
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps per run")
    parser.add_argument("--warmup-steps", type=int, default=2, help="untimed steps first in each process")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every trainer, order rotated each round")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--instances-per-task", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads for every run")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--allocator", choices=["system", "jemalloc"], default="system", help="the C allocator of every trainer"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON report (default: benchmarks/results/)")
    parser.add_argument("--memory", action="store_true", help="gradient checkpointing's memory and speed instead")
    parser.add_argument(
        "--memory-runs", nargs="+", choices=list(MEMORY_RUNS), default=list(MEMORY_RUNS), help="--memory: which runs"
    )
    parser.add_argument("--one", choices=list(TRAINERS), help=argparse.SUPPRESS)  # a single run (internal)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results_dir = REPO / "benchmarks" / "results"
    if args.one:
        print(json.dumps(one_run(args)))
        return 0
    if args.memory:
        report = memory_comparison(args)
        out = args.out or results_dir / "train_memory.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report["peak_rss_gb"], indent=2))
        return 0
    report = compare(args)
    out = args.out or results_dir / "train_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["tokens_per_second"], indent=2))
    print(f"ours / best peer ({report['best_peer']}), median tokens/s: {report['speedup_vs_best_peer']}x "
          f"(range {report['speedup_range'][0]}-{report['speedup_range'][1]}x) -> {out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
