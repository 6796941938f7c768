"""Write an evaluation run for machines (scores.json, predictions JSONL) and people (report.md, chart.png)."""

from __future__ import annotations

import json
from pathlib import Path

from eval.benchmarks import METRICS
from eval.metrics import METRIC_FUNCTIONS, best_over_references
from eval.official import write_official_files
from eval.runner import BASE, EvalRun

WRONG_SAMPLES = 5


def scores_dict(run: EvalRun) -> dict:
    return {
        "base_model": run.base_model,
        "benchmarks": {b.name: {"metric": b.metric, "category": b.category, "instances": len(b.instances)} for b in run.benchmarks},
        "models": {
            name: {
                "tasks": run.scores[name],
                "mean": {m: run.mean(name, m) for m in (*METRICS, "score")},
                "delta_vs_base": (
                    {b.name: round(run.scores[name][b.name]["score"] - run.scores[BASE][b.name]["score"], 4) for b in run.benchmarks}
                    if BASE in run.scores and name != BASE
                    else None
                ),
            }
            for name in run.models
        },
        "prompts_truncated": run.prompts_truncated,
    }


def write_report(run: EvalRun, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    scores = scores_dict(run)
    (out / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    with open(out / "predictions.jsonl", "w") as f:
        for name in run.models:
            for bench in run.benchmarks:
                for inst, pred in zip(bench.instances, run.predictions[name][bench.name]):
                    row = {"id": inst.id, "prediction": pred, "model": name, "task_id": bench.name, "references": inst.references}
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
    write_official_files(out, run.benchmarks, run.predictions)
    (out / "report.md").write_text(markdown(run, scores))
    plot_scores(run, out / "chart.png")
    return scores


def markdown(run: EvalRun, scores: dict) -> str:
    models = run.models
    lines = [f"# Evaluation on {run.base_model}", "", "Primary metric per task (exact match for label tasks, ROUGE-L otherwise), ×100."]
    if BASE in models:
        lines.append("Parenthesised: change against the base model.")
    lines += ["", "| task | metric | " + " | ".join(models) + " |", "|---|---|" + "---:|" * len(models)]
    for bench in run.benchmarks:
        cells = []
        for name in models:
            value = run.scores[name][bench.name]["score"]
            delta = scores["models"][name]["delta_vs_base"]
            cells.append(f"{value:.1f}" + (f" ({delta[bench.name]:+.1f})" if delta else ""))
        lines.append(f"| {bench.name} | {bench.metric} | " + " | ".join(cells) + " |")
    lines.append("| **mean** | | " + " | ".join(f"**{run.mean(n):.1f}**" for n in models) + " |")
    lines += ["", "Both metrics, mean over tasks:", "", "| model | exact match | ROUGE-L |", "|---|---:|---:|"]
    lines += [f"| {n} | {run.mean(n, 'exact_match'):.1f} | {run.mean(n, 'rougeL'):.1f} |" for n in models]
    lines += ["", "## Sample of wrong answers", ""]
    for name in models:
        for bench in run.benchmarks:
            metric = METRIC_FUNCTIONS[bench.metric]  # "wrong" by the task's own primary metric, worst first
            scored = [(best_over_references(metric, pred, inst.references), inst, pred)
                      for inst, pred in zip(bench.instances, run.predictions[name][bench.name])]  # fmt: skip
            wrong = [(inst, pred) for value, inst, pred in sorted(scored, key=lambda t: t[0]) if value < 1.0][:WRONG_SAMPLES]
            if not wrong:
                continue
            lines += [f"**{name}** on `{bench.name}`:", ""]
            for inst, pred in wrong:
                lines.append(f"- `{_short(inst.input)}` → got `{_short(pred)}`, expected `{_short(inst.references[0])}`")
            lines.append("")
    if run.prompts_truncated:
        lines.append(f"{run.prompts_truncated} prompts were longer than the input limit and kept only their tail.")
    return "\n".join(lines) + "\n"


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split()).replace("`", "'")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plot_scores(run: EvalRun, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [b.name for b in run.benchmarks] + (["mean"] if len(run.benchmarks) > 1 else [])
    width = 0.8 / len(run.models)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(tasks) * max(1, len(run.models) / 2)), 4.5))
    for k, name in enumerate(run.models):
        values = [run.scores[name][b.name]["score"] for b in run.benchmarks] + ([run.mean(name)] if len(tasks) > len(run.benchmarks) else [])
        xs = [i + (k - (len(run.models) - 1) / 2) * width for i in range(len(tasks))]
        bars = ax.bar(xs, values, width, label=name)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(range(len(tasks)), [t if len(t) <= 28 else t[:27] + "…" for t in tasks], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("score (primary metric, ×100)")
    ax.set_ylim(0, 105)
    ax.set_title(f"Held-out scores on {run.base_model}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
