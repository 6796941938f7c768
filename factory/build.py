"""Recipe: build the best specialist for a task, deciding generalist data by evidence.

    specialist build --task task363_sst2_polarity_classification --instances-per-task 64 \
        --candidates 0,1.0 --epochs 2 --out runs/sst2-build [--policy configs/gate.yaml]

candidates (one adapter per generalist setting) -> selection set (choose) -> held-out set (gate the choice):

1. Train one adapter per candidate. When there are several, the last `selection_instances` answered instances
   of each task's training pool are kept out of every candidate's training: the **selection set**.
2. Score the candidates on the selection set and choose: the best mean score, except that a candidate with
   less generalist data whose score is not clearly worse (the paired interval of the difference includes 0)
   is preferred -- the simpler mixture wins near-ties.
3. Gate the chosen candidate on the **held-out** evaluation set, scored once, after the choice, with the base
   model, the majority-label baseline and the champion. That decision is what the gate reports, so the
   reported score is not the maximum of several noisy ones.

`<out>/decision.json` (a `BuildDecision`) says why, with every interval.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from eval.benchmarks import generalist_benchmark, selection_benchmark
from eval.gate import gate_adapter, load_policy, structural_checks
from eval.runner import run_eval
from factory.config import BuildConfig, selection_size
from factory.decision import BuildDecision, CandidateResult, SelectionSet
from factory.milestones import (
    CandidateGated,
    CandidatesScored,
    CandidateStarted,
    CandidateTrained,
    CheckpointSaved,
    OnMilestone,
)
from specialist.adapters import DECISION_NAME, MANIFEST_NAME, read_manifest
from specialist.base_models import resolve_base_model
from specialist.config import TrainConfig
from specialist.errors import SpecialistError
from training.recipe import train_or_reuse


def build_specialist(
    cfg: BuildConfig,
    on_event: Callable[[str, dict], None] | None = None,
    on_milestone: OnMilestone | None = None,
) -> BuildDecision:
    """Train, select, gate; returns (and writes to <out>/decision.json) the decision.

    `on_event(stage, info)` reports progress: ('training', {candidate, index, of, step, steps, loss, eta_seconds}),
    ('evaluating', {...}), ('gating', {...}). `on_milestone` gets the typed records of `factory.milestones`.
    """
    emit = on_event or (lambda stage, info: None)
    mark = on_milestone or (lambda milestone: None)
    out = Path(cfg.out)
    specs = cfg.specs()
    policy = load_policy(cfg.policy)
    base = resolve_base_model(cfg.base_model)
    selection = selection_size(len(specs), cfg.selection_instances)
    # Check what the gate needs before hours of training, not after.
    if cfg.champion is not None:
        bad = [c for c in structural_checks(cfg.champion, base) if not c.passed]
        if bad:
            raise SpecialistError(
                f"champion {cfg.champion} is unusable: {bad[0].detail}", "pass a valid --champion or none"
            )
    if policy.retention is not None:
        generalist_benchmark(policy.retention.data, policy.retention.instances)

    adapters: dict[str, Path] = {}
    for index, spec in enumerate(specs):
        print(f"candidate {spec.name}: generalist ratio {spec.ratio:g}, filter {spec.filter}", flush=True)
        mark(CandidateStarted(spec.name, index, len(specs), spec.ratio, spec.filter))

        def on_step(state, plan, name=spec.name, index=index):
            rate = state.elapsed / max(1, state.step)
            emit(
                "training",
                {
                    "candidate": name,
                    "index": index,
                    "of": len(specs),
                    "step": state.step,
                    "steps": plan.total_steps,
                    "loss": state.losses[-1],
                    "eta_seconds": round(rate * (plan.total_steps - state.step), 1),
                },
            )

        def on_checkpoint(state, path, name=spec.name):
            mark(CheckpointSaved(name, state.step, state.losses[-1], path))

        train_cfg = TrainConfig.model_validate(
            cfg.model_dump(include=set(TrainConfig.model_fields))
            | spec.train_options()
            | {"selection_instances": selection, "out": out / "candidates" / spec.name}
        )
        reused = (Path(train_cfg.out) / MANIFEST_NAME).is_file()
        adapters[spec.name] = train_or_reuse(train_cfg, on_step, on_checkpoint)
        training = read_manifest(adapters[spec.name]).training
        mark(CandidateTrained(spec.name, index, len(specs), adapters[spec.name], training, reused))

    tasks = list(read_manifest(next(iter(adapters.values()))).tasks)
    candidates = [
        CandidateResult(
            name=spec.name,
            generalist_ratio=spec.ratio,
            generalist_filter=spec.filter,
            generalist_examples=read_manifest(adapters[spec.name]).mixture.generalist_examples,
            adapter=str(adapters[spec.name]),
            problems=[c.detail for c in structural_checks(adapters[spec.name], base) if not c.passed],
        )
        for spec in specs
    ]
    record = None
    if selection:
        emit("evaluating", {"set": "selection", "candidates": len(candidates), "instances_per_task": selection})
        benchmarks = [selection_benchmark(cfg.task_data, t, selection, policy.metric_overrides.get(t)) for t in tasks]
        usable = {c.name: adapters[c.name] for c in candidates if not c.problems}
        run = (
            run_eval(base, usable, benchmarks, include_base=False, device=cfg.device, progress=cfg.progress)
            if usable
            else None
        )
        record = SelectionSet(
            instances_per_task=selection, instance_ids={b.name: [i.id for i in b.instances] for b in benchmarks}
        )
        selected, reason = _select(candidates, run, tasks, policy.interval_options())
        mark(CandidatesScored(candidates, selected.name if selected else None, reason))
    else:  # the gate reports an unusable candidate's problems itself
        selected, reason = candidates[0], "a single candidate: nothing to choose"

    for c in candidates:  # a reused candidate may hold a decision from an earlier build: only the selected one is gated
        if selected is None or c.name != selected.name:
            (Path(c.adapter) / DECISION_NAME).unlink(missing_ok=True)
    gate = None
    if selected is not None:
        emit("gating", {"set": "held-out", "candidate": selected.name})
        gate = gate_adapter(Path(selected.adapter), policy, base, cfg.task_data, cfg.champion, cfg.progress, cfg.device)
        mark(CandidateGated(selected.name, gate))
        verdict = "passed the gate" if gate.passed else f"was not promoted: {gate.summary()}"
        reason += f"; on the held-out set {selected.name} {verdict}"
    decision = BuildDecision(
        tasks=tasks,
        base_model=base.id,
        candidates=candidates,
        selection=record,
        selected=selected.name if selected else None,
        gate=gate,
        reason=reason,
    )
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "decision.json.tmp"
    tmp.write_text(decision.model_dump_json(indent=2) + "\n")
    tmp.replace(out / "decision.json")
    return decision


def _select(
    candidates: list[CandidateResult], run, tasks: list[str], options: dict
) -> tuple[CandidateResult | None, str]:
    """Fill in each candidate's selection score and its gap to the best; pick the one to gate, with the reason."""
    usable = [c for c in candidates if not c.problems]
    if not usable or run is None:
        return None, "no candidate can be served: " + "; ".join(
            f"{c.name}: {'; '.join(c.problems)}" for c in candidates
        )
    for c in usable:
        c.selection_score = run.interval(c.name, tasks=tasks, **options)
    best = max(usable, key=lambda c: (c.selection_score.value, -c.generalist_examples))
    for c in usable:
        if c is not best:
            c.versus_best = run.interval(c.name, best.name, tasks=tasks, **options)
    # Near-ties go to the candidate with less generalist data: its gap to the best is not clearly below 0.
    tied = [c for c in usable if c is best or c.versus_best.high >= 0]
    chosen = min(tied, key=lambda c: (c.generalist_examples, -c.selection_score.value))
    ranking = ", ".join(f"{c.name} {c.selection_score}" for c in sorted(usable, key=lambda c: -c.selection_score.value))
    pct = round(100 * options["confidence"])
    if chosen is best:
        why = f"{best.name} has the best selection score"
        if len(tied) > 1:
            why += " and no candidate with less generalist data is within its interval"
    else:
        why = (
            f"{chosen.name} is within the {pct}% interval of the best ({best.name}, gap {chosen.versus_best.signed()}) "
            f"and uses less generalist data"
        )
    kind = "specialist-only" if chosen.generalist_ratio == 0 else "generalist-augmented"
    return chosen, f"{why} ({kind}; selection set: {ranking})"


def summarize(decision: BuildDecision) -> str:
    """For people: one line per candidate, then the choice."""
    lines = []
    for c in decision.candidates:
        score = (
            f"selection {c.selection_score}"
            if c.selection_score
            else ("unusable: " + "; ".join(c.problems) if c.problems else "")
        )
        mark = " <- selected" if c.name == decision.selected else ""
        lines.append(f"{c.name:<24} {score}{mark}")
    lines.append(f"chosen: {decision.chosen or 'none'} -- {decision.reason}")
    return "\n".join(lines)
