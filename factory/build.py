"""Recipe: build the best specialist for a task, deciding generalist data by evidence.

    specialist build --task task363_sst2_polarity_classification --instances-per-task 64 \
        --candidates 0,1.0 --epochs 2 --out runs/sst2-build [--policy configs/gate.yaml]

One adapter per candidate (a generalist ratio, optionally with the no-facts filter), all scored with the base
model in one evaluation pass, each gated, and the best passing one chosen. `<out>/decision.json` says why,
including when specialist-only wins (the paper's knowledge-heavy case).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from specialist.adapters import read_manifest
from specialist.base_models import resolve_base_model
from specialist.config import StrictModel, TrainConfig
from specialist.errors import SpecialistError
from specialist.generalist import GENERALIST_FILTERS

from eval.benchmarks import generalist_benchmark, superni_benchmark
from eval.gate import CHAMPION, decide, load_policy, make_decision, save_decision, structural_checks
from eval.runner import BASE, run_eval
from training.recipe import train_or_reuse

AUTO_CANDIDATES = ["0", "1.0", "1.0:no-facts"]


class Candidate(BaseModel):
    name: str
    ratio: float
    filter: str = "none"

    @classmethod
    def parse(cls, spec: str) -> "Candidate":
        ratio, _, kind = spec.partition(":")
        kind = kind or "none"
        try:
            value = float(ratio)
        except ValueError:
            raise SpecialistError(f"candidate {spec!r} is not RATIO or RATIO:FILTER", "e.g. --candidates 0,1.0,1.0:no-facts") from None
        if not 0 <= value <= 100 or kind not in GENERALIST_FILTERS:
            raise SpecialistError(f"candidate {spec!r} is out of range", f"ratios 0-100, filters {', '.join(GENERALIST_FILTERS)}")
        name = f"ratio{value:g}" + ("" if kind == "none" else f"-{kind}")
        return cls(name=name, ratio=value, filter=kind)


class BuildSettings(StrictModel):
    """Candidates and the gate."""

    candidates: list[str] = Field(default_factory=lambda: ["0", "1.0"], description="generalist ratios to try, RATIO[:no-facts], comma-separated")
    generalist_policy: Literal["explicit", "auto"] = Field(
        "explicit", description=f"'auto' tries {','.join(AUTO_CANDIDATES)} (ignores --candidates)"
    )
    policy: Path | None = Field(None, description="gate policy YAML (default: must beat the base model)")
    champion: Path | None = Field(None, description="current champion adapter to beat")

    @field_validator("candidates", mode="before")
    @classmethod
    def _split(cls, value):
        items = [value] if isinstance(value, str) else list(value)
        return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


class BuildConfig(BuildSettings, TrainConfig):
    """`specialist build`: train flags plus candidates and gate."""


def build_specialist(cfg: BuildConfig, on_event=None) -> dict:
    """Returns (and writes to <out>/decision.json) every candidate's scores and checks, and the choice.

    `on_event(stage, info)` reports progress: ('training', {candidate, index, of, step, steps, loss, eta_seconds}),
    ('evaluating', {...}), ('gating', {...}).
    """
    emit = on_event or (lambda stage, info: None)
    out = Path(cfg.out)
    specs = AUTO_CANDIDATES if cfg.generalist_policy == "auto" else cfg.candidates
    candidates = [Candidate.parse(s) for s in specs]
    if len({c.name for c in candidates}) != len(candidates):
        raise SpecialistError("the same candidate is listed twice", "list each ratio/filter once")
    policy = load_policy(cfg.policy)
    base = resolve_base_model(cfg.base_model)
    # Check what the gate needs before hours of training, not after.
    if cfg.champion is not None:
        bad = [c for c in structural_checks(cfg.champion, base) if not c.passed]
        if bad:
            raise SpecialistError(f"champion {cfg.champion} is unusable: {bad[0].detail}", "pass a valid --champion or none")
    if policy.retention is not None:
        generalist_benchmark(policy.retention.data, policy.retention.instances)

    adapters: dict[str, Path] = {}
    for index, cand in enumerate(candidates):
        print(f"candidate {cand.name}: generalist ratio {cand.ratio:g}, filter {cand.filter}", flush=True)

        def on_step(state, plan, cand=cand, index=index):
            rate = state.elapsed / max(1, state.step)
            emit("training", {"candidate": cand.name, "index": index, "of": len(candidates), "step": state.step,
                              "steps": plan.total_steps, "loss": state.losses[-1],
                              "eta_seconds": round(rate * (plan.total_steps - state.step), 1)})  # fmt: skip

        train_cfg = TrainConfig.model_validate(
            cfg.model_dump(include=set(TrainConfig.model_fields))
            | {"generalist_ratio": cand.ratio, "generalist_count": None, "generalist_filter": cand.filter, "out": out / "candidates" / cand.name}
        )
        adapters[cand.name] = train_or_reuse(train_cfg, on_step)

    tasks = list(read_manifest(next(iter(adapters.values()))).tasks)
    benchmarks = [superni_benchmark(cfg.task_data, t, policy.metric_overrides.get(t), limit=policy.eval_instances) for t in tasks]
    if policy.retention is not None:
        benchmarks.append(generalist_benchmark(policy.retention.data, policy.retention.instances))
    emit("evaluating", {"candidates": len(adapters), "instances": sum(len(b.instances) for b in benchmarks)})
    evaluated = dict(adapters) | ({CHAMPION: cfg.champion} if cfg.champion else {})
    run = run_eval(base, evaluated, benchmarks, include_base=True, device=cfg.device, progress=cfg.progress)

    emit("gating", {"candidates": len(adapters)})
    rows = []
    for cand in candidates:
        champion = CHAMPION if cfg.champion else None
        checks = structural_checks(adapters[cand.name], base) + decide(run, cand.name, policy, tasks, champion)
        scores = {m: run.scores[m] for m in (BASE, cand.name, *([CHAMPION] if champion else []))}
        decision = make_decision(adapters[cand.name], checks, base, policy, scores, cfg.champion)
        save_decision(adapters[cand.name], decision)
        rows.append(
            {
                "name": cand.name,
                "generalist_ratio": cand.ratio,
                "generalist_filter": cand.filter,
                "adapter": str(adapters[cand.name]),
                "mean_score": run.mean(cand.name, tasks=tasks),
                "scores": run.scores[cand.name],
                "passed": decision.passed,
                "failed_checks": [c.name for c in decision.failures()],
                "checks": [c.model_dump() for c in checks],
            }
        )
    passing = [r for r in rows if r["passed"]]
    # Best mean primary score; on a tie, the simpler mixture (less generalist data) wins.
    chosen = max(passing, key=lambda r: (r["mean_score"], -r["generalist_ratio"]), default=None)
    result = {
        "tasks": tasks,
        "base_model": base.id,
        "base_mean_score": run.mean(BASE, tasks=tasks),
        "candidates": rows,
        "chosen": chosen["name"] if chosen else None,
        "chosen_adapter": chosen["adapter"] if chosen else None,
        "reason": _reason(rows, chosen, run.mean(BASE, tasks=tasks)),
    }
    (out / "decision.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _reason(rows: list[dict], chosen: dict | None, base_score: float) -> str:
    ranking = ", ".join(f"{r['name']} {r['mean_score']:.1f}{'' if r['passed'] else ' (failed gate)'}" for r in sorted(rows, key=lambda r: -r["mean_score"]))
    if chosen is None:
        return f"no candidate passed the gate (base model {base_score:.1f}; {ranking})"
    kind = "specialist-only" if chosen["generalist_ratio"] == 0 else "generalist-augmented"
    return f"{chosen['name']} ({kind}) has the best mean score among passing candidates: {ranking}; base model {base_score:.1f}"
