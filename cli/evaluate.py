"""`specialist eval`, `gate`, `build` and `experiment`: score, judge and choose adapters."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import Field

from cli.options import add_model_flags, model_from_args
from eval.benchmarks import Metric
from specialist.adapters.decision import DEFAULT_CONFIDENCE
from specialist.config import MixtureConfig, StrictModel
from specialist.errors import SpecialistError
from specialist.superni import HELD_OUT_INSTANCES


def add_parsers(sub) -> None:
    _add_eval_parsers(sub)
    _add_gate_parser(sub)
    _add_factory_parsers(sub)


def _task_field(name: str, **kwargs):
    """The task-selection options mean what they mean for `train`: one flag name and one help text per idea."""
    return Field(description=MixtureConfig.model_fields[name].description, **kwargs)


class EvalOptions(StrictModel):
    """`specialist eval`: which models, on which benchmarks, and how the scores are reported."""

    adapter: list[str] = Field(
        default_factory=list, description="adapter to score, [NAME=]DIR (repeatable); name defaults to the folder name"
    )
    base: bool = Field(False, description="also score the bare base model")
    base_model: str | None = Field(
        None, description="base model (default: the one in the first adapter's manifest, else the packaged default)"
    )
    task_data: Path | None = _task_field("task_data", default=None)
    task: list[str] = _task_field("task", default_factory=list)
    category: list[str] = _task_field("category", default_factory=list)
    task_list: Path | None = _task_field("task_list", default=None)
    benchmark: Path | None = Field(None, description="custom JSONL benchmark of {id, input, references}")
    benchmark_name: str | None = Field(None, description="task name of the custom benchmark (default: the file's stem)")
    definition: str | None = Field(None, description="instruction for the custom benchmark's prompts")
    metric: Metric | None = Field(
        None, description="primary metric (default: exact match for label tasks, else ROUGE-L)"
    )
    eval_instances: int | None = Field(
        None, ge=1, le=HELD_OUT_INSTANCES, description="score only the first N of each task's evaluation instances"
    )
    batch_size: int = Field(16, ge=1, le=1024, description="generation batch size")
    confidence: float = Field(DEFAULT_CONFIDENCE, gt=0, lt=1, description="confidence of the reported intervals")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu or cuda[:N]")
    out: Path | None = Field(None, description="output folder (required unless `eval score`)")
    progress: bool = Field(True, description="show progress bars")


class ScoreOptions(StrictModel):
    """`specialist eval score`: the official scorer over prediction and reference files."""

    predictions: Path = Field(description="JSONL of {id, prediction}")
    references: Path = Field(description="JSONL of {id, references, task_id, task_category, track}")
    out: Path | None = Field(None, description="also write the results as JSON here")


def _add_eval_parsers(sub) -> None:
    ev = sub.add_parser(
        "eval",
        help="score adapters and the base model on held-out task instances (or `eval score` prediction files)",
        description="Evaluate adapters (and the bare base model) on held-out task instances or a custom JSONL "
        "benchmark, all in one pass with mixed-adapter batches. Writes scores.json, predictions.jsonl (+ official "
        "predictions_<model>.jsonl and references.jsonl), report.md and chart.png to --out.",
        epilog="examples: specialist eval --adapter runs/sst2 --base --task task363_sst2_polarity_classification --out runs/eval | "
        "specialist eval score --predictions P.jsonl --references R.jsonl",
    )
    add_model_flags(ev, EvalOptions, config_file=False)
    ev.set_defaults(handler=_eval)
    ev_sub = ev.add_subparsers(dest="eval_command", metavar="ACTION")
    sc = ev_sub.add_parser(
        "score",
        help="official SuperNI scoring of prediction/reference JSONL files",
        description="Score predictions with the official SuperNI metrics (exact match, ROUGE-L) per task, category "
        "and track; prints the results as JSON.",
    )
    add_model_flags(sc, ScoreOptions, required=("predictions", "references"), config_file=False)
    sc.set_defaults(handler=_eval_score)


class GateOptions(StrictModel):
    candidate: Path = Field(description="adapter directory to judge")
    policy: Path | None = Field(
        None, description="gate policy YAML (default: must beat the base model, the majority label and the champion)"
    )
    champion: Path | None = Field(None, description="the task's current champion adapter")
    base_model: str | None = Field(None, description="base model (default: the candidate manifest's)")
    task_data: Path | None = _task_field("task_data", default=None)
    progress: bool = Field(True, description="show progress bars")


def _add_gate_parser(sub) -> None:
    gate = sub.add_parser(
        "gate",
        help="decide whether an adapter may be promoted (exit 0 pass, 1 fail, 2 usage error)",
        description="Evaluate the candidate with the base model (and the champion) in one pass, run every check of "
        "the policy, print them as a table and save gate_decision.json beside the adapter.",
        epilog="example: specialist gate --candidate runs/sst2 --policy configs/gate.yaml",
    )
    add_model_flags(gate, GateOptions, required=("candidate",), config_file=False)
    gate.set_defaults(handler=_gate)


def _add_factory_parsers(sub) -> None:
    from factory.config import BuildConfig, ExperimentConfig

    build = sub.add_parser(
        "build",
        help="train one candidate per generalist setting, choose on a selection set, gate the choice on the held-out set",
        description="Decide generalist-augmented vs specialist-only by evidence: candidates are compared on a selection "
        "set none of them trains on, and only the chosen one is gated on the held-out set. --out holds candidates/ and "
        "decision.json.",
        epilog="example: specialist build --task task363_sst2_polarity_classification --instances-per-task 64 "
        "--candidates 0,1.0 --epochs 2 --out runs/sst2-build",
    )
    add_model_flags(
        build,
        BuildConfig,
        required=("out",),
        exclude=("generalist_ratio", "generalist_count", "generalist_filter", "resume"),
    )
    build.set_defaults(handler=_build)

    exp = sub.add_parser(
        "experiment",
        help="the paper's grid: score vs instances per task, with and without generalist data, over seeds",
        description="Train the grid (instances x generalist settings x seeds), evaluate every adapter with the base model "
        "in one pass, and write results.csv, results.json, results.md and curve.png (intervals over seeds and "
        "instances) to --out.",
        epilog="example: specialist experiment --task task363_sst2_polarity_classification --instances-per-task 8,32,128 "
        "--generalist-ratios 0,1 --seeds 1 --epochs 2 --out runs/exp",
    )
    add_model_flags(
        exp,
        ExperimentConfig,
        required=("out",),
        exclude=("generalist_ratio", "generalist_count", "generalist_filter", "seed", "resume", "selection_instances"),
    )
    exp.set_defaults(handler=_experiment)


def _adapter_dirs(specs: list[str]) -> dict[str, Path]:
    from specialist.paths import validate_name

    adapters: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        path = Path(path if sep else spec)
        name = name if sep else path.resolve().name
        validate_name(name, "adapter name")
        if name in adapters:
            raise SpecialistError(f"two adapters are named {name!r}", "name them with --adapter NAME=DIR")
        adapters[name] = path
    return adapters


def _base_for(spec: str | None, adapters: dict[str, Path]):
    from specialist.adapters import read_manifest
    from specialist.base_models import DEFAULT_BASE_MODEL, resolve_base_model

    if spec is None:
        spec = read_manifest(next(iter(adapters.values()))).base_model.id if adapters else DEFAULT_BASE_MODEL
    return resolve_base_model(spec)


def _eval(args: argparse.Namespace) -> int:
    from eval.benchmarks import custom_benchmark, task_benchmark
    from eval.report import write_report
    from eval.runner import run_eval
    from specialist.paths import default_task_data
    from specialist.superni import select_tasks

    args = model_from_args(EvalOptions, args, "eval options")
    if args.out is None:
        raise SpecialistError("--out is required", "pass the folder to write scores and reports to")
    adapters = _adapter_dirs(args.adapter)
    task_dir = args.task_data or default_task_data()
    benchmarks = []
    if args.benchmark:
        if not args.definition:
            raise SpecialistError(
                "a custom --benchmark needs --definition", "pass the task instruction its prompts use"
            )
        benchmarks.append(
            custom_benchmark(args.benchmark, args.benchmark_name or args.benchmark.stem, args.definition, args.metric)
        )
    if args.task or args.category or args.task_list or not benchmarks:
        names = select_tasks(task_dir, args.task, args.category, args.task_list)
        benchmarks += [task_benchmark(task_dir, n, args.metric, limit=args.eval_instances) for n in names]
    run = run_eval(
        _base_for(args.base_model, adapters),
        adapters,
        benchmarks,
        args.base,
        args.batch_size,
        args.device,
        args.progress,
    )
    scores = write_report(run, args.out, args.confidence)
    pct = round(100 * args.confidence)
    for name in run.models:
        entry = scores["models"][name]
        interval = entry["interval"]
        delta = entry["delta_vs_base_interval"]
        versus = f"; vs base {delta['value']:+.2f} [{delta['low']:+.2f}, {delta['high']:+.2f}]" if delta else ""
        print(
            f"{name}: mean score {interval['value']:.2f} [{interval['low']:.2f}, {interval['high']:.2f}] ({pct}%){versus} "
            f"(exact match {run.mean(name, 'exact_match'):.2f}, ROUGE-L {run.mean(name, 'rougeL'):.2f})"
        )
    if scores["majority_label"]:
        interval = scores["majority_label"]["interval"]
        print(
            f"majority label ({len(run.label_tasks)} label task(s)): {interval['value']:.2f} [{interval['low']:.2f}, {interval['high']:.2f}]"
        )
    print(f"wrote {args.out}/scores.json, predictions.jsonl, report.md, chart.png")
    return 0


def _eval_score(args: argparse.Namespace) -> int:
    import json

    from eval.official import score_files

    args = model_from_args(ScoreOptions, args, "score options")
    results, missing = score_files(args.predictions, args.references)
    if missing:
        print(f"No prediction for {missing} instances. Use empty string as prediction.", file=sys.stderr)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


def _gate(args: argparse.Namespace) -> int:
    from eval.gate import checks_table, gate_adapter, load_policy
    from specialist.adapters import DECISION_NAME, MANIFEST_NAME
    from specialist.paths import default_task_data

    # Exit codes are part of the contract: 0 pass, 1 fail, 2 anything the user must fix first.
    try:
        args = model_from_args(GateOptions, args, "gate options")
        policy = load_policy(args.policy)
        candidate = Path(args.candidate)
        if not candidate.is_dir():
            raise SpecialistError(
                f"candidate {candidate} is not a directory", "pass an adapter directory made by `specialist train`"
            )
        base = _base_for(args.base_model, {"candidate": candidate} if (candidate / MANIFEST_NAME).is_file() else {})
        decision = gate_adapter(
            candidate, policy, base, args.task_data or default_task_data(), args.champion, args.progress
        )
    except SpecialistError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(checks_table(decision.checks, decision.confidence))
    print(f"{decision.summary()}: {candidate} -> {candidate / DECISION_NAME}")
    return 0 if decision.passed else 1


def _build(args: argparse.Namespace) -> int:
    from eval.gate import checks_table
    from factory.build import build_specialist, summarize
    from factory.config import BuildConfig

    decision = build_specialist(model_from_args(BuildConfig, args, "build options"))
    if decision.gate is not None:
        print(f"gate of {decision.selected} on the held-out set:")
        print(checks_table(decision.gate.checks, decision.gate.confidence))
    print(summarize(decision))
    return 0 if decision.chosen else 1


def _experiment(args: argparse.Namespace) -> int:
    from factory.config import ExperimentConfig
    from factory.experiment import run_experiment

    cfg = model_from_args(ExperimentConfig, args, "experiment options")
    run_experiment(cfg)
    print((Path(cfg.out) / "results.md").read_text())
    print(f"wrote {cfg.out}/results.csv, results.md, curve.png")
    return 0
