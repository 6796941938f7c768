"""Write an evaluation run for machines (scores.json, predictions JSONL) and people (report.md, chart.png).

Every score comes with its bootstrap interval over instances, and every change against the base model with
its paired interval; label tasks add the majority-label baseline and a confusion table per model.
"""

from __future__ import annotations

import json
from pathlib import Path

from eval.benchmarks import METRICS, Benchmark
from eval.intervals import DEFAULT_CONFIDENCE
from eval.metrics import METRIC_FUNCTIONS, best_over_references, normalize_answer
from eval.official import write_official_files
from eval.runner import EvalRun
from specialist.adapters.decision import BASE, MAJORITY

WRONG_SAMPLES = 5
OTHER = "other"


def scores_dict(run: EvalRun, confidence: float = DEFAULT_CONFIDENCE) -> dict:
    """Every score, with bootstrap intervals per model and per change against the base model."""
    tasks = [b.name for b in run.benchmarks]

    def ci(model, reference=None, names=tasks):
        return run.interval(model, reference, tasks=names, confidence=confidence).model_dump()

    has_base = BASE in run.scores

    def model_entry(name: str, names: list[str]) -> dict:
        entry = {
            "tasks": run.scores[name],
            "mean": {m: run.mean(name, m, names) for m in (*METRICS, "score")},
            "interval": ci(name, names=names),
            "task_intervals": {t: ci(name, names=[t]) for t in names},
            "delta_vs_base": None,
            "delta_vs_base_interval": None,
            "task_delta_intervals": None,
        }
        if has_base and name != BASE:
            entry["delta_vs_base"] = {
                t: round(run.scores[name][t]["score"] - run.scores[BASE][t]["score"], 4) for t in names
            }
            entry["delta_vs_base_interval"] = ci(name, BASE, names)
            entry["task_delta_intervals"] = {t: ci(name, BASE, [t]) for t in names}
        return entry

    majority = None
    if run.label_tasks:
        majority = model_entry(MAJORITY, run.label_tasks) | {
            "labels": {b.name: b.majority.model_dump() for b in run.benchmarks if b.majority is not None}
        }
    return {
        "base_model": run.base_model,
        "stop_rule": run.stop_rule,
        "confidence": confidence,
        "benchmarks": {
            b.name: {"metric": b.metric, "category": b.category, "instances": len(b.instances)} for b in run.benchmarks
        },
        "models": {name: model_entry(name, tasks) for name in run.models},
        "majority_label": majority,
        "prompts_truncated": run.prompts_truncated,
    }


def write_report(run: EvalRun, out: Path, confidence: float = DEFAULT_CONFIDENCE) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    scores = scores_dict(run, confidence)
    (out / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    with open(out / "predictions.jsonl", "w") as f:
        for name in run.models:
            for bench in run.benchmarks:
                for inst, pred in zip(bench.instances, run.predictions[name][bench.name]):
                    row = {
                        "id": inst.id,
                        "prediction": pred,
                        "model": name,
                        "task_id": bench.name,
                        "references": inst.references,
                    }
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
    write_official_files(out, run.benchmarks, {m: run.predictions[m] for m in run.models})
    (out / "report.md").write_text(markdown(run, scores))
    plot_scores(run, scores, out / "chart.png")
    return scores


def _ci(entry: dict, signed: bool = False) -> str:
    fmt = "{:+.1f}" if signed else "{:.1f}"
    return f"{fmt.format(entry['value'])} [{fmt.format(entry['low'])}, {fmt.format(entry['high'])}]"


def markdown(run: EvalRun, scores: dict) -> str:
    models = run.models
    pct = round(100 * scores["confidence"])
    rule = run.stop_rule
    lines = [
        f"# Evaluation on {run.base_model}",
        "",
        "Primary metric per task (exact match for label tasks, ROUGE-L otherwise), ×100, with its "
        f"{pct}% bootstrap interval over instances. Every model's generations end by the stop rule "
        f"`{rule['name']}` v{rule['version']} (a new line of the prompt frame) or at EOS.",
    ]
    majority = scores["majority_label"]
    columns = models + (["majority label"] if majority else [])
    lines += ["", "| task | metric | " + " | ".join(columns) + " |", "|---|---|" + "---:|" * len(columns)]
    for bench in run.benchmarks:
        cells = [_ci(scores["models"][n]["task_intervals"][bench.name]) for n in models]
        if majority:
            cells.append(
                _ci(majority["task_intervals"][bench.name]) if bench.name in majority["task_intervals"] else "–"
            )
        lines.append(f"| {bench.name} | {bench.metric} | " + " | ".join(cells) + " |")
    cells = [f"**{_ci(scores['models'][n]['interval'])}**" for n in models]
    if majority:
        note = "" if len(run.label_tasks) == len(run.benchmarks) else f" ({len(run.label_tasks)} label tasks)"
        cells.append(f"**{_ci(majority['interval'])}**{note}")
    lines.append("| **mean** | | " + " | ".join(cells) + " |")
    if majority:
        lines += [
            "",
            "Majority label: the most common answer among each label task's training instances (never its evaluation instances):",
            "",
        ]
        for task, label in majority["labels"].items():
            tie = f"; tied with {', '.join(label['tied'])}, broken alphabetically" if label["tied"] else ""
            lines.append(f"- `{task}`: `{label['label']}` ({label['count']} of {label['of']} training instances{tie})")
    others = [n for n in models if scores["models"][n]["delta_vs_base_interval"]]
    if others:
        lines += ["", f"## Change against the base model ({pct}% paired bootstrap intervals)", ""]
        lines += ["| task | " + " | ".join(others) + " |", "|---|" + "---:|" * len(others)]
        for bench in run.benchmarks:
            cells = [_ci(scores["models"][n]["task_delta_intervals"][bench.name], signed=True) for n in others]
            lines.append(f"| {bench.name} | " + " | ".join(cells) + " |")
        lines.append(
            "| **mean** | "
            + " | ".join(f"**{_ci(scores['models'][n]['delta_vs_base_interval'], signed=True)}**" for n in others)
            + " |"
        )
    lines += ["", "Both metrics, mean over tasks:", "", "| model | exact match | ROUGE-L |", "|---|---:|---:|"]
    lines += [f"| {n} | {run.mean(n, 'exact_match'):.1f} | {run.mean(n, 'rougeL'):.1f} |" for n in models]
    confusion = [b for b in run.benchmarks if b.labels]
    if confusion:
        lines += [
            "",
            "## Confusion tables (label tasks)",
            "",
            "Rows: reference label; columns: predicted label ('other': an answer outside the label set).",
        ]
        for bench in confusion:
            for name in models:
                lines += ["", f"**{name}** on `{bench.name}`:", ""] + confusion_table(
                    bench, run.predictions[name][bench.name]
                )
    lines += ["", "## Sample of wrong answers", ""]
    for name in models:
        for bench in run.benchmarks:
            metric = METRIC_FUNCTIONS[bench.metric]  # "wrong" by the task's own primary metric, worst first
            scored = [
                (best_over_references(metric, pred, inst.references), inst, pred)
                for inst, pred in zip(bench.instances, run.predictions[name][bench.name])
            ]
            wrong = [(inst, pred) for value, inst, pred in sorted(scored, key=lambda t: t[0]) if value < 1.0][
                :WRONG_SAMPLES
            ]
            if not wrong:
                continue
            lines += [f"**{name}** on `{bench.name}`:", ""]
            for inst, pred in wrong:
                lines.append(
                    f"- `{_short(inst.input)}` → got `{_short(pred)}`, expected `{_short(inst.references[0])}`"
                )
            lines.append("")
    if run.prompts_truncated:
        lines.append(f"{run.prompts_truncated} prompts were longer than the input limit and kept only their tail.")
    return "\n".join(lines) + "\n"


def confusion_table(bench: Benchmark, predictions: list[str]) -> list[str]:
    """Markdown rows: reference label x predicted label, plus 'other' for answers outside the label set."""
    labels = list(bench.labels)
    counts: dict[tuple[str, str], int] = {}
    for inst, pred in zip(bench.instances, predictions):
        references = [normalize_answer(r) for r in inst.references]
        got = normalize_answer(pred or "")
        # A prediction that matches any reference counts as that reference (exact match takes the max too).
        row = got if got in references else references[0]
        column = got if got in labels else OTHER
        counts[(row, column)] = counts.get((row, column), 0) + 1
    columns = labels + [OTHER]
    rows = [r for r in labels if any(counts.get((r, c)) for c in columns)]
    table = [
        "| reference \\ predicted | " + " | ".join(f"`{c}`" if c != OTHER else c for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    table += [f"| `{r}` | " + " | ".join(str(counts.get((r, c), 0)) for c in columns) + " |" for r in rows]
    return table


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split()).replace("`", "'")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plot_scores(run: EvalRun, scores: dict, path: Path) -> None:
    """Bars per task and model with their intervals; the majority label as a dotted mark on label tasks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [b.name for b in run.benchmarks] + (["mean"] if len(run.benchmarks) > 1 else [])
    width = 0.8 / len(run.models)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(tasks) * max(1, len(run.models) / 2)), 4.5))
    for k, name in enumerate(run.models):
        entry = scores["models"][name]
        intervals = [entry["task_intervals"][b.name] for b in run.benchmarks] + (
            [entry["interval"]] if len(tasks) > len(run.benchmarks) else []
        )
        values = [i["value"] for i in intervals]
        errors = [[i["value"] - i["low"] for i in intervals], [i["high"] - i["value"] for i in intervals]]
        xs = [i + (k - (len(run.models) - 1) / 2) * width for i in range(len(tasks))]
        bars = ax.bar(xs, values, width, yerr=errors, capsize=2, label=name)
        ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=2)
    majority = scores["majority_label"]
    if majority:
        label = "majority label"
        for i, bench in enumerate(run.benchmarks):
            if bench.name in majority["task_intervals"]:
                value = majority["task_intervals"][bench.name]["value"]
                ax.hlines(value, i - 0.45, i + 0.45, colors="black", linestyles="dotted", label=label)
                label = None  # one legend entry
    ax.set_xticks(
        range(len(tasks)), [t if len(t) <= 28 else t[:27] + "…" for t in tasks], rotation=20, ha="right", fontsize=8
    )
    ax.set_ylabel("score (primary metric, ×100)")
    ax.set_ylim(0, 110)
    ax.set_title(f"Held-out scores on {run.base_model} ({round(100 * scores['confidence'])}% intervals)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
