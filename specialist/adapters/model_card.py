"""The adapter's README.md: a model card written from its manifest and, once gated, its gate decision.

peft's `save_pretrained` writes an empty template there. Training replaces it when it publishes the adapter, and
the gate rewrites it when it saves its decision, so the card always says what the directory beside it holds:
the base model and its hash, the task, the data and its licences, how it was trained, and how it scored.
"""

from __future__ import annotations

import os
from pathlib import Path

from specialist.adapters.decision import GateDecision, read_decision
from specialist.adapters.manifest import AdapterManifest, read_manifest
from specialist.errors import SpecialistError

CARD_NAME = "README.md"
_DEFINITIONS_SHOWN = 10  # a category-wide adapter lists every task, but shows only this many definitions
_DEFINITION_CHARS = 1500


def write_model_card(adapter_dir: Path, manifest: AdapterManifest | None = None) -> Path | None:
    """Write README.md in `adapter_dir` from its manifest (`manifest`, or the one there) and its gate decision,
    if it has one. None, and nothing written, for a directory without a valid manifest (nothing to describe)."""
    adapter_dir = Path(adapter_dir)
    if manifest is None:
        try:
            manifest = read_manifest(adapter_dir)
        except SpecialistError:  # no or an invalid manifest: the gate refuses such an adapter, there is no card
            return None
    path = adapter_dir / CARD_NAME
    tmp = path.with_name(f".{CARD_NAME}.tmp")
    tmp.write_text(render_model_card(manifest, read_decision(adapter_dir)))
    os.chmod(tmp, 0o644)  # adapter files are world-readable: a serving container's user reads them
    tmp.replace(path)
    return path


def render_model_card(manifest: AdapterManifest, decision: GateDecision | None = None) -> str:
    tasks = list(manifest.tasks)
    title = ", ".join(tasks[:3]) + (f" and {len(tasks) - 3} more tasks" if len(tasks) > 3 else "")
    sections = [
        "---\nlibrary_name: peft\ntags:\n- lora\n- specialist-factory\n---",
        f"# LoRA specialist: {title}\n\nA LoRA adapter made by Specialist Factory (`specialist train`); "
        "`manifest.json` beside this card holds everything below in machine-readable form.",
        _base_model(manifest),
        _tasks(manifest),
        _data(manifest),
        _training(manifest),
        _evaluation(decision),
    ]
    return "\n\n".join(sections).rstrip() + "\n"


def _base_model(m: AdapterManifest) -> str:
    base = m.base_model
    lines = [
        "## Base model",
        "",
        f"- id: `{base.id}`",
        f"- content sha256: `{base.content_sha256}` (config.json and the weight files; every stage checks it)",
    ]
    if base.source:
        lines.append(f"- source: {base.source}" + (f", sha256 `{base.source_sha256}`" if base.source_sha256 else ""))
        lines.append(
            "- Load this adapter on exactly these weights (`specialist models prepare` makes them): a checkpoint "
            "with other weights, such as a full-precision one from the hub, is another base model."
        )
    return "\n".join(lines)


def _tasks(m: AdapterManifest) -> str:
    lines = [
        "## Task" + ("s" if len(m.tasks) > 1 else ""),
        "",
        f"Prompt format `{m.prompt_format}` version {m.prompt_format_version}: the definition, then the "
        "demonstrations, then the input; the adapter answers after `Output:`.",
    ]
    for i, (name, prompt) in enumerate(m.tasks.items()):
        shown = len(prompt.examples[: prompt.num_examples])
        lines += ["", f"### {name}", "", f"{shown} demonstration(s) in each prompt."]
        if i < _DEFINITIONS_SHOWN:
            definition = prompt.definition.strip()
            if len(definition) > _DEFINITION_CHARS:
                definition = definition[:_DEFINITION_CHARS].rstrip() + " …"
            lines += ["", *(f"> {line}".rstrip() for line in definition.splitlines())]
    return "\n".join(lines)


def _data(m: AdapterManifest) -> str:
    mix = m.mixture
    spec = mix.spec  # the mixture options as given
    lines = [
        "## Data and mixture",
        "",
        f"- {mix.specialist_examples} task examples and {mix.generalist_examples} generalist examples, shuffled "
        f"with seed {m.seed}"
        + (f"; {mix.skipped_too_long} too long to train on were skipped" if mix.skipped_too_long else ""),
        f"- generalist data: {_generalist_setting(spec)}, filter `{spec.get('generalist_filter', 'none')}`",
        f"- realized mixture sha256: `{mix.content_sha256}`",
        "- each task's evaluation instances (for SuperNI, its first 100) were held out and never trained on",
        "",
        "| source | used | available | licence | sha256 |",
        "|---|---|---|---|---|",
    ]
    for name, s in mix.sources.items():
        lines.append(
            f"| {_cell(name)} | {s.used} | {s.available} | {_cell(s.license or 'not stated')} | `{s.sha256}` |"
        )
    lines += [
        "",
        "### Licence of the data",
        "",
        "The adapter was trained on the data above and its use is bound by the data's terms. Each row's licence is "
        "the one its file states (SuperNI: the task's `Instance License`; the collection itself is Apache-2.0) or, "
        "for the generalist files the project ships, the one their provider states. 'not stated': the data came "
        "without one, and its owner's terms apply.",
    ]
    return "\n".join(lines)


def _generalist_setting(spec: dict) -> str:
    if spec.get("generalist_ratio") is not None:
        return f"ratio {spec['generalist_ratio']:g} of the task examples"
    if spec.get("generalist_count"):
        return f"{spec['generalist_count']} records"
    return "none"


def _training(m: AdapterManifest) -> str:
    t = m.training
    loss = (
        f"{t.first_loss:.4f} → {t.final_loss:.4f}" if t.first_loss is not None and t.final_loss is not None else "n/a"
    )
    lines = [
        "## Training",
        "",
        f"- {t.steps} optimizer steps ({t.epochs:g} epochs, {t.examples_seen} examples, {t.tokens} unpadded "
        f"tokens) in {t.wall_seconds:.0f} s on {t.device} ({t.dtype}), {t.tokens_per_second:.0f} tokens/s",
        f"- loss {loss}",
        f"- seed {m.seed}; made {m.created_at}",
        "",
        "| hyperparameter | value |",
        "|---|---|",
        *(f"| {_cell(k)} | {_cell(v)} |" for k, v in m.hyperparameters.items()),
    ]
    if m.package_versions:
        lines += ["", "Packages: " + ", ".join(f"{k} {v}" for k, v in m.package_versions.items())]
    return "\n".join(lines)


def _evaluation(decision: GateDecision | None) -> str:
    if decision is None:
        return "## Evaluation and gate\n\nNot gated yet: `specialist gate --candidate DIR` scores it and rewrites this card."
    pct = f"{round(100 * decision.confidence)}%"
    lines = [
        "## Evaluation and gate",
        "",
        f"Gate result: **{decision.summary()}** ({decision.created_at}), for adapter weights sha256 "
        f"`{decision.adapter_sha256}` on base model sha256 `{decision.base_sha256}`"
        + (f"; champion: `{decision.champion}`" if decision.champion else "")
        + ".",
        "",
        f"| check | result | value | {pct} interval | threshold | instances per task | detail |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in decision.checks:
        result = "PASS" if c.passed else "UNDECIDED" if c.undecided else "FAIL"
        interval = "" if c.ci_low is None else f"[{c.ci_low:g}, {c.ci_high:g}]"
        lines.append(
            f"| {_cell(c.name)} | {result} | {_num(c.value)} | {interval} | {_num(c.threshold)} | "
            f"{'' if c.instances is None else c.instances} | {_cell(c.detail)} |"
        )
    if decision.scores:
        lines += ["", "Scores on the held-out instances (means, 0-100):", "", "| model | task | metric | score |"]
        lines.append("|---|---|---|---|")
        for model, tasks in decision.scores.items():
            for task, metrics in tasks.items():
                lines += [f"| {model} | {_cell(task)} | {metric} | {score:g} |" for metric, score in metrics.items()]
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _cell(value: object) -> str:
    """A markdown table cell: one line, pipes escaped."""
    return " ".join(str(value).split()).replace("|", "\\|")
