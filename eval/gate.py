"""The promotion gate: every check with its numbers, pass or fail; nothing is routed without a passing decision.

Semantics follow MLflow's model validation: absolute thresholds plus minimum changes against baselines (the
base model, the task's current champion); a missing metric fails; every failure is reported, not only the
first. The decision is saved beside the adapter as `gate_decision.json`, bound to the adapter's weights hash.

    specialist gate --candidate runs/sst2 --policy configs/gate.yaml [--champion DIR]
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field

from specialist.adapters import ADAPTER_WEIGHTS, DECISION_NAME, lora_only_problems, read_manifest
from specialist.base_models import BaseModelRef
from specialist.config import StrictModel, load_yaml_config, validate_config
from specialist.errors import SpecialistError
from specialist.paths import sha256_file
from specialist.prompt_format import check_supported
from specialist.superni import HELD_OUT_INSTANCES

from eval.benchmarks import Benchmark, GateMetric, Metric, generalist_benchmark, superni_benchmark
from eval.runner import BASE, EvalRun, run_eval

CANDIDATE, CHAMPION = "candidate", "champion"
Score = Annotated[float, Field(ge=0, le=100)]
Gain = Annotated[float, Field(ge=-100, le=100)]


class RetentionPolicy(StrictModel):
    """The specialist must keep some general ability: ROUGE-L on a generalist set vs the base model."""

    data: Path = Field(description="generalist benchmark, e.g. ../shared/data/generalist/user_oriented_252.jsonl")
    max_drop: Score = Field(5.0, description="largest allowed fall below the base model, in ROUGE-L points")
    instances: int = Field(50, ge=1, le=1000, description="instructions to score")


class GatePolicy(StrictModel):
    """Promotion policy (YAML). Scores are x100; gains are in points of each task's primary metric."""

    min_score: dict[GateMetric, Score] = Field(
        default_factory=dict, description="absolute thresholds on the mean over tasks ('score' = primary metric)"
    )
    per_task_min_score: dict[GateMetric, Score] = Field(
        default_factory=dict, description="thresholds every single task must meet"
    )
    min_gain_over_base: Gain | None = Field(0.0, description="candidate - base model, mean primary score; null skips")
    min_gain_over_champion: Gain | None = Field(
        0.0, description="candidate - current champion (negative = allowed regression); null skips"
    )
    metric_overrides: dict[str, Metric] = Field(default_factory=dict, description="task -> primary metric")
    retention: RetentionPolicy | None = None
    eval_instances: int | None = Field(None, ge=1, le=HELD_OUT_INSTANCES, description="score on the first N held-out instances only")


class Check(BaseModel):
    name: str
    passed: bool
    value: float | None = None
    threshold: float | None = None
    detail: str = ""


class GateDecision(BaseModel):
    candidate: str
    adapter_sha256: str | None
    base_model: dict[str, str]
    champion: str | None
    passed: bool
    checks: list[Check]
    scores: dict[str, dict[str, dict[str, float]]] = Field(description="model -> task -> metrics")
    policy: dict
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]


def load_policy(path: Path | None) -> GatePolicy:
    """Read a policy YAML; a relative `retention.data` path is taken relative to the YAML file's folder."""
    if path is None:
        return GatePolicy()
    policy = validate_config(GatePolicy, load_yaml_config(path), f"gate policy {path}")
    if policy.retention is not None and not policy.retention.data.is_absolute():
        retention = policy.retention.model_copy(update={"data": (Path(path).parent / policy.retention.data).resolve()})
        policy = policy.model_copy(update={"retention": retention})
    return policy


def structural_checks(candidate: Path, base: BaseModelRef) -> list[Check]:
    """Loadable LoRA-only safetensors, a readable manifest, a known prompt format, the same base model."""
    problems = lora_only_problems(candidate)
    checks = [Check(name="valid LoRA-only PEFT adapter", passed=not problems, detail="; ".join(problems) or "ok")]
    try:
        manifest = read_manifest(candidate)
    except SpecialistError as e:
        return checks + [Check(name=name, passed=False, detail=e.problem) for name in ("known prompt format", "same base model")]
    try:
        check_supported(manifest.prompt_format, manifest.prompt_format_version)
        checks.append(Check(name="known prompt format", passed=True, detail=f"{manifest.prompt_format} v{manifest.prompt_format_version}"))
    except SpecialistError as e:
        checks.append(Check(name="known prompt format", passed=False, detail=e.problem))
    same = manifest.base_model.content_sha256 == base.content_sha256
    detail = f"{base.id} ({base.content_sha256[:12]}...)" if same else f"trained for {manifest.base_model.id}, serving {base.id}"
    checks.append(Check(name="same base model", passed=same, detail=detail))
    return checks


def benchmarks_for(candidate: Path, task_dir: Path, policy: GatePolicy) -> list[Benchmark]:
    manifest = read_manifest(candidate)
    return [
        superni_benchmark(task_dir, task, policy.metric_overrides.get(task), limit=policy.eval_instances)
        for task in manifest.tasks
    ]


def decide(run: EvalRun, candidate: str, policy: GatePolicy, tasks: list[str], champion: str | None = None) -> list[Check]:
    """The metric checks of `candidate` in an evaluation run that also scored the base model (and champion)."""
    checks: list[Check] = []

    def mean(model: str, metric: str) -> float | None:
        try:
            return run.mean(model, metric, tasks)
        except (KeyError, ZeroDivisionError):
            return None  # a missing metric fails the check that needs it

    for metric, threshold in policy.min_score.items():
        value = mean(candidate, metric)
        checks.append(_at_least(f"mean {metric} >= {threshold:g}", value, threshold))
    for metric, threshold in policy.per_task_min_score.items():
        for task in tasks:
            value = run.scores.get(candidate, {}).get(task, {}).get(metric)
            checks.append(_at_least(f"{task} {metric} >= {threshold:g}", value, threshold))
    if policy.min_gain_over_base is not None:
        checks.append(_gain("beats base model", mean(candidate, "score"), mean(BASE, "score"), policy.min_gain_over_base))
    if policy.min_gain_over_champion is not None:
        if champion is None:
            checks.append(Check(name="beats champion", passed=True, detail="no champion yet"))
        else:
            checks.append(_gain("beats champion", mean(candidate, "score"), mean(champion, "score"), policy.min_gain_over_champion))
    if policy.retention is not None:
        value = run.scores.get(candidate, {}).get("generalist", {}).get("rougeL")
        base_value = run.scores.get(BASE, {}).get("generalist", {}).get("rougeL")
        checks.append(_gain("keeps general ability (ROUGE-L)", value, base_value, -policy.retention.max_drop))
    return checks


def _at_least(name: str, value: float | None, threshold: float) -> Check:
    if value is None:
        return Check(name=name, passed=False, threshold=threshold, detail="metric missing")
    return Check(name=name, passed=value >= threshold, value=value, threshold=threshold)


def _gain(name: str, value: float | None, reference: float | None, min_gain: float) -> Check:
    if value is None or reference is None:
        return Check(name=name, passed=False, threshold=min_gain, detail="metric missing")
    gain = round(value - reference, 4)
    return Check(name=name, passed=gain >= min_gain, value=gain, threshold=min_gain, detail=f"{value:.2f} vs {reference:.2f}")


def gate_adapter(
    candidate: Path,
    policy: GatePolicy,
    base: BaseModelRef,
    task_dir: Path,
    champion: Path | None = None,
    progress: bool = True,
) -> GateDecision:
    """Evaluate candidate, base (and champion) in one pass, run every check, save and return the decision."""
    candidate = Path(candidate)
    checks = structural_checks(candidate, base)
    if champion is not None:
        bad = [c for c in structural_checks(Path(champion), base) if not c.passed]
        if bad:
            raise SpecialistError(f"champion {champion} is unusable: {bad[0].detail}", "pass a valid --champion or none")
    scores: dict = {}
    if all(c.passed for c in checks):
        benchmarks = benchmarks_for(candidate, task_dir, policy)
        tasks = [b.name for b in benchmarks]
        if policy.retention is not None:
            benchmarks.append(generalist_benchmark(policy.retention.data, policy.retention.instances))
        adapters = {CANDIDATE: candidate} | ({CHAMPION: Path(champion)} if champion else {})
        run = run_eval(base, adapters, benchmarks, include_base=True, progress=progress)
        checks += decide(run, CANDIDATE, policy, tasks, CHAMPION if champion else None)
        scores = run.scores
    else:  # an adapter we cannot load has no metrics: every metric check fails as missing
        checks += decide(EvalRun(base.id, [], []), CANDIDATE, policy, [], CHAMPION if champion else None)
    decision = make_decision(candidate, checks, base, policy, scores, champion)
    save_decision(candidate, decision)
    return decision


def make_decision(
    candidate: Path, checks: list[Check], base: BaseModelRef, policy: GatePolicy, scores: dict, champion: Path | None = None
) -> GateDecision:
    """Bind the checks to this exact adapter (weights hash) and base model."""
    weights = Path(candidate) / ADAPTER_WEIGHTS
    return GateDecision(
        candidate=str(Path(candidate).resolve()),
        adapter_sha256=sha256_file(weights) if weights.is_file() else None,
        base_model={"id": base.id, "content_sha256": base.content_sha256},
        champion=str(Path(champion).resolve()) if champion else None,
        passed=all(c.passed for c in checks),
        checks=checks,
        scores=scores,
        policy=policy.model_dump(mode="json"),
    )


def save_decision(adapter_dir: Path, decision: GateDecision) -> Path:
    path = Path(adapter_dir) / DECISION_NAME
    if not Path(adapter_dir).is_dir():
        return path
    tmp = path.with_suffix(".tmp")
    tmp.write_text(decision.model_dump_json(indent=2) + "\n")
    tmp.replace(path)
    return path


def read_decision(adapter_dir: Path) -> GateDecision | None:
    path = Path(adapter_dir) / DECISION_NAME
    if not path.is_file():
        return None
    return GateDecision.model_validate(json.loads(path.read_text()))


def checks_table(checks: list[Check]) -> str:
    rows = [("check", "result", "value", "threshold", "detail")]
    for c in checks:
        rows.append(
            (
                c.name,
                "PASS" if c.passed else "FAIL",
                "" if c.value is None else f"{c.value:g}",
                "" if c.threshold is None else f"{c.threshold:g}",
                c.detail,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)
