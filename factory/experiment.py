"""Recipe: the paper's experiment. Score vs instances per task, with and without generalist data, over seeds.

    specialist experiment --config configs/experiment_narrow.yaml --out runs/exp-narrow

Trains one adapter per (instances per task, generalist setting, seed), scores all of them with the base model
in one evaluation pass on the target's held-out instances, and writes:
- results.csv: every score (cell, seed, task);
- results.json: per cell the mean over seeds with its interval (`confidence`, default 95%), the paired change
  against specialist-only,
  and the wall time of each cell's training;
- results.md and curve.png (mean over tasks vs instances per task, one line per setting, interval bars).

A seed changes the drawn task instances, the generalist sample and the LoRA initialisation. Intervals come from
a bootstrap that resamples both the seeds and the evaluation instances (`eval.intervals`), so they cover the
training randomness and the finite evaluation set; a change against specialist-only is paired by seed (same
task instances, same initialisation) and by instance.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from pydantic import BaseModel, Field

from eval.benchmarks import task_benchmark
from eval.intervals import DEFAULT_RESAMPLES, Interval, bootstrap
from eval.runner import EvalRun, run_eval
from factory.config import ExperimentConfig
from specialist.adapters import read_manifest
from specialist.adapters.decision import BASE, MAJORITY
from specialist.base_models import resolve_base_model
from specialist.config import TrainConfig
from specialist.errors import SpecialistError
from specialist.generalist import GeneralistSpec, parse_specs
from specialist.superni import select_tasks
from training.recipe import train_or_reuse


class CellResult(BaseModel):
    """One point of the curve: a setting at one size, over every seed."""

    instances_per_task: int
    setting: str
    label: str
    score: Interval = Field(description="mean over tasks and seeds of the primary metric, with its interval")
    per_seed: dict[int, float] = Field(description="seed -> mean over tasks")
    versus_specialist_only: Interval | None = Field(
        None, description="this setting - specialist only, paired by seed and instance"
    )
    train_wall_seconds: dict[int, float] = Field(description="seed -> training wall time (as recorded in the manifest)")


class ExperimentResult(BaseModel):
    tasks: list[str]
    metrics: dict[str, str] = Field(description="task -> primary metric")
    base_model: str
    base: Interval
    majority_label: Interval | None = Field(
        None, description="when every task is a label task: always answering its majority label"
    )
    cells: list[CellResult]
    seeds: list[int]
    eval_instances: int
    eval_wall_seconds: float
    stop_rule: dict
    train: dict = Field(description="the training options every cell shares")


def _cell_name(n: int, spec: GeneralistSpec, seed: int) -> str:
    return f"n{n}-r{spec.ratio:g}{'' if spec.filter == 'none' else '-' + spec.filter}-s{seed}"


def run_experiment(cfg: ExperimentConfig) -> ExperimentResult:
    out = Path(cfg.out)
    tasks = select_tasks(cfg.task_data, cfg.task, cfg.category, cfg.task_list)
    specs = parse_specs(cfg.generalist_ratios)
    if any(n < 1 for n in cfg.instances_per_task):
        raise SpecialistError("instances per task must be >= 1", "e.g. --instances-per-task 8,32,128")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise SpecialistError("a seed is listed twice", "list each seed once, e.g. --seeds 1,2,3")
    grid = [(n, spec, s) for n in cfg.instances_per_task for spec in specs for s in cfg.seeds]
    adapters: dict[str, Path] = {}
    for i, (n, spec, s) in enumerate(grid, 1):
        name = _cell_name(n, spec, s)
        print(f"[{i}/{len(grid)}] {name}: {n} instances per task, {spec.label}, seed {s}", flush=True)
        shared = cfg.model_dump(include=set(TrainConfig.model_fields) - {"instances_per_task"})
        adapters[name] = train_or_reuse(
            TrainConfig.model_validate(
                shared
                | spec.train_options()
                | {
                    "task": tasks,
                    "category": [],
                    "task_list": None,
                    "instances_per_task": n,
                    "seed": s,
                    "out": out / "adapters" / name,
                }
            )
        )

    base = resolve_base_model(cfg.base_model)
    benchmarks = [task_benchmark(cfg.task_data, t, limit=cfg.eval_instances) for t in tasks]
    started = time.perf_counter()
    run = run_eval(base, adapters, benchmarks, include_base=True, device=cfg.device, progress=cfg.progress)
    result = summarize(run, cfg, specs, tasks, adapters, time.perf_counter() - started)
    write_results(out, run, result, grid)
    return result


def summarize(
    run: EvalRun,
    cfg: ExperimentConfig,
    specs: list[GeneralistSpec],
    tasks: list[str],
    adapters: dict[str, Path],
    eval_seconds: float,
) -> ExperimentResult:
    def side(n: int, spec: GeneralistSpec) -> list[dict[str, list[float]]]:
        return [{t: run.instance_scores[_cell_name(n, spec, s)][t]["score"] for t in tasks} for s in cfg.seeds]

    reference = next((s for s in specs if s.ratio == 0), None)
    interval = dict(confidence=cfg.confidence, resamples=DEFAULT_RESAMPLES, seed=0)
    cells = []
    for n in cfg.instances_per_task:
        for spec in specs:
            names = {s: _cell_name(n, spec, s) for s in cfg.seeds}
            versus = None
            if reference is not None and spec != reference:
                versus = bootstrap(side(n, spec), side(n, reference), **interval)
            cells.append(
                CellResult(
                    instances_per_task=n,
                    setting=spec.name,
                    label=spec.label,
                    score=bootstrap(side(n, spec), **interval),
                    per_seed={s: run.mean(name, tasks=tasks) for s, name in names.items()},
                    versus_specialist_only=versus,
                    train_wall_seconds={
                        s: read_manifest(adapters[name]).training.wall_seconds for s, name in names.items()
                    },
                )
            )
    return ExperimentResult(
        tasks=tasks,
        metrics={b.name: b.metric for b in run.benchmarks},
        base_model=run.base_model,
        base=run.interval(BASE, tasks=tasks, confidence=cfg.confidence),
        majority_label=run.interval(MAJORITY, tasks=tasks, confidence=cfg.confidence)
        if run.label_tasks == tasks
        else None,
        cells=cells,
        seeds=cfg.seeds,
        eval_instances=cfg.eval_instances,
        eval_wall_seconds=round(eval_seconds, 1),
        stop_rule=run.stop_rule,
        train=cfg.model_dump(
            mode="json", exclude={"out", "task", "task_data", "instances_per_task", "generalist_ratios", "seeds"}
        ),
    )


def write_results(
    out: Path, run: EvalRun, result: ExperimentResult, grid: list[tuple[int, GeneralistSpec, int]]
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fields = ["instances_per_task", "generalist", "seed", "task", "metric", "exact_match", "rougeL", "score"]
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for task in result.tasks:
            writer.writerow(
                {
                    "instances_per_task": 0,
                    "generalist": "base model",
                    "seed": "",
                    "task": task,
                    "metric": result.metrics[task],
                    **run.scores[BASE][task],
                }
            )
        for n, spec, s in grid:
            for task in result.tasks:
                scores = run.scores[_cell_name(n, spec, s)][task]
                writer.writerow(
                    {
                        "instances_per_task": n,
                        "generalist": spec.name,
                        "seed": s,
                        "task": task,
                        "metric": result.metrics[task],
                        **scores,
                    }
                )
    (out / "results.json").write_text(result.model_dump_json(indent=2) + "\n")
    (out / "results.md").write_text(markdown(result))
    plot_curve(result, out / "curve.png")


def markdown(result: ExperimentResult) -> str:
    settings = list(dict.fromkeys(c.setting for c in result.cells))
    labels = {c.setting: c.label for c in result.cells}
    pct = round(100 * result.base.confidence)
    task_text = result.tasks[0] if len(result.tasks) == 1 else f"{len(result.tasks)} tasks ({', '.join(result.tasks)})"
    lines = [
        f"Mean primary score over {task_text}, first {result.eval_instances} held-out instances each, on {result.base_model}; "
        f"mean over seeds {', '.join(map(str, result.seeds))} with its {pct}% interval (bootstrap over seeds and instances). "
        f"Base model: {result.base}."
        + (f" Majority label: {result.majority_label}." if result.majority_label else "")
        + f" Generations end by the stop rule {result.stop_rule['name']} v{result.stop_rule['version']}.",
        "",
    ]
    deltas = [s for s in settings if any(c.setting == s and c.versus_specialist_only for c in result.cells)]
    header = ["instances per task", *(labels[s] for s in settings), *(f"{labels[s]} − specialist only" for s in deltas)]
    lines += ["| " + " | ".join(header) + " |", "|---:|" + "---:|" * (len(header) - 1)]
    for n in dict.fromkeys(c.instances_per_task for c in result.cells):
        row = {c.setting: c for c in result.cells if c.instances_per_task == n}
        cells = [str(row[s].score) for s in settings] + [row[s].versus_specialist_only.signed() for s in deltas]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "Training wall time per cell (seconds, mean over seeds):", ""]
    lines += [
        "| instances per task | " + " | ".join(labels[s] for s in settings) + " |",
        "|---:|" + "---:|" * len(settings),
    ]
    for n in dict.fromkeys(c.instances_per_task for c in result.cells):
        row = {c.setting: c for c in result.cells if c.instances_per_task == n}
        walls = [sum(row[s].train_wall_seconds.values()) / len(row[s].train_wall_seconds) for s in settings]
        lines.append(f"| {n} | " + " | ".join(f"{w:.0f}" for w in walls) + " |")
    lines += ["", f"Evaluation of every adapter and the base model in one pass: {result.eval_wall_seconds:.0f} s."]
    return "\n".join(lines) + "\n"


def plot_curve(result: ExperimentResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    settings = list(dict.fromkeys(c.setting for c in result.cells))
    for k, setting in enumerate(settings):
        cells = [c for c in result.cells if c.setting == setting]
        ns = [
            c.instances_per_task * (1 + 0.04 * (k - (len(settings) - 1) / 2)) for c in cells
        ]  # nudge: bars stay apart
        means = [c.score.value for c in cells]
        errs = [[c.score.value - c.score.low for c in cells], [c.score.high - c.score.value for c in cells]]
        ax.errorbar(ns, means, yerr=errs, marker="o", capsize=3, label=cells[0].label)
    ax.axhline(result.base.value, color="gray", linestyle="--", label="base model")
    if result.majority_label:
        ax.axhline(result.majority_label.value, color="black", linestyle=":", label="majority label")
    ax.set_xscale("log", base=2)
    ax.set_xticks(
        sorted({c.instances_per_task for c in result.cells}),
        [str(n) for n in sorted({c.instances_per_task for c in result.cells})],
    )
    ax.set_xlabel("training instances per task")
    ax.set_ylabel("held-out score (primary metric, ×100)")
    title = result.tasks[0] if len(result.tasks) == 1 else f"{len(result.tasks)} tasks"
    pct = round(100 * result.base.confidence)
    ax.set_title(
        f"Specialist vs generalist-augmented: {title}\nmean over {len(result.seeds)} seeds, {pct}% intervals",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
