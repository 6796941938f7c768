"""Recipe: the paper's experiment. Score vs instances per task, with and without generalist data.

    specialist experiment --task task363_sst2_polarity_classification --instances-per-task 8,32,128 \
        --generalist-ratios 0,1 --seeds 1 --epochs 2 --out runs/exp-narrow

Trains one adapter per (instances, ratio, seed), scores all of them with the base model in one evaluation
pass on the target's held-out instances, and writes results.csv, results.md and curve.png (mean over tasks
vs instances per task, one line per generalist ratio, error bars over seeds), like the paper's main figure.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

from pydantic import Field, field_validator

from specialist.base_models import resolve_base_model
from specialist.config import StrictModel, TrainConfig
from specialist.errors import SpecialistError
from specialist.superni import HELD_OUT_INSTANCES, select_tasks

from eval.benchmarks import superni_benchmark
from eval.runner import BASE, run_eval
from training.recipe import train_or_reuse


def _split(value) -> list[str]:
    items = [value] if isinstance(value, (str, int, float)) else list(value)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


class GridSettings(StrictModel):
    """The grid."""

    instances_per_task: list[int] = Field(default_factory=lambda: [8, 32, 128], description="instances per task, comma-separated")
    generalist_ratios: list[float] = Field(default_factory=lambda: [0.0, 1.0], description="generalist ratios, comma-separated")
    seeds: list[int] = Field(default_factory=lambda: [1], description="seeds, comma-separated (error bars over seeds)")
    eval_instances: int = Field(
        HELD_OUT_INSTANCES, ge=1, le=HELD_OUT_INSTANCES, description="score on the first N held-out instances of each task"
    )

    @field_validator("instances_per_task", "generalist_ratios", "seeds", mode="before")
    @classmethod
    def _comma_lists(cls, value):
        return _split(value)


class ExperimentConfig(GridSettings, TrainConfig):
    """`specialist experiment`: the grid plus the train flags shared by every cell."""


def run_experiment(cfg: ExperimentConfig) -> list[dict]:
    out = Path(cfg.out)
    tasks = select_tasks(cfg.task_data, cfg.task, cfg.category, cfg.task_list)
    if any(r < 0 for r in cfg.generalist_ratios) or any(n < 1 for n in cfg.instances_per_task):
        raise SpecialistError("instances must be >= 1 and ratios >= 0", "e.g. --instances-per-task 8,32 --generalist-ratios 0,1")
    cells = [(n, r, s) for n in cfg.instances_per_task for r in cfg.generalist_ratios for s in cfg.seeds]
    adapters: dict[str, Path] = {}
    for i, (n, r, s) in enumerate(cells, 1):
        name = f"n{n}-r{r:g}-s{s}"
        print(f"[{i}/{len(cells)}] {name}", flush=True)
        adapters[name] = train_or_reuse(
            TrainConfig.model_validate(
                cfg.model_dump(include=set(TrainConfig.model_fields) - {"instances_per_task"})
                | {"task": tasks, "category": [], "task_list": None, "instances_per_task": n,
                   "generalist_ratio": r, "generalist_count": None, "seed": s, "out": out / "adapters" / name}
            )  # fmt: skip
        )

    base = resolve_base_model(cfg.base_model)
    benchmarks = [superni_benchmark(cfg.task_data, t, limit=cfg.eval_instances) for t in tasks]
    run = run_eval(base, adapters, benchmarks, include_base=True, device=cfg.device, progress=cfg.progress)

    rows = [
        {"instances_per_task": 0, "generalist_ratio": "", "seed": "", "task": b.name, "metric": b.metric, **run.scores[BASE][b.name]}
        for b in benchmarks
    ]
    for n, r, s in cells:
        name = f"n{n}-r{r:g}-s{s}"
        for b in benchmarks:
            rows.append({"instances_per_task": n, "generalist_ratio": r, "seed": s, "task": b.name, "metric": b.metric, **run.scores[name][b.name]})
    write_results(out, rows, cfg, tasks, run.mean(BASE))
    return rows


def _cell_means(rows: list[dict]) -> dict[tuple[int, float], list[float]]:
    """(instances, ratio) -> one mean-over-tasks score per seed."""
    per_seed: dict[tuple, list[float]] = {}
    for row in rows:
        if row["instances_per_task"]:
            per_seed.setdefault((row["instances_per_task"], row["generalist_ratio"], row["seed"]), []).append(row["score"])
    cells: dict[tuple[int, float], list[float]] = {}
    for (n, r, _), scores in sorted(per_seed.items()):
        cells.setdefault((n, r), []).append(sum(scores) / len(scores))
    return cells


def write_results(out: Path, rows: list[dict], cfg: ExperimentConfig, tasks: list[str], base_score: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    cells = _cell_means(rows)
    ratios = sorted({r for _, r in cells})
    lines = [
        f"Mean primary score over {len(tasks)} task(s) ({', '.join(tasks)}), first {cfg.eval_instances} held-out instances each; "
        f"mean ± std over seeds {', '.join(map(str, cfg.seeds))}. Base model: {base_score:.1f}.",
        "",
        "| instances per task | " + " | ".join(f"generalist ratio {r:g}" for r in ratios) + " |",
        "|---:|" + "---:|" * len(ratios),
    ]
    for n in sorted({n for n, _ in cells}):
        lines.append(f"| {n} | " + " | ".join(_mean_std(cells.get((n, r), [])) for r in ratios) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    plot_curve(cells, base_score, out / "curve.png", tasks)


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {std:.1f}"


def plot_curve(cells: dict, base_score: float, path: Path, tasks: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for ratio in sorted({r for _, r in cells}):
        ns = sorted(n for n, r in cells if r == ratio)
        means = [statistics.mean(cells[(n, ratio)]) for n in ns]
        errs = [statistics.stdev(cells[(n, ratio)]) if len(cells[(n, ratio)]) > 1 else 0.0 for n in ns]
        label = "specialist only" if ratio == 0 else f"+ generalist (ratio {ratio:g})"
        ax.errorbar(ns, means, yerr=errs, marker="o", capsize=3, label=label)
    ax.axhline(base_score, color="gray", linestyle="--", label="base model")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training instances per task")
    ax.set_ylabel("held-out score (primary metric, ×100)")
    title = tasks[0] if len(tasks) == 1 else f"{len(tasks)} tasks"
    ax.set_title(f"Specialist vs generalist-augmented: {title}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
