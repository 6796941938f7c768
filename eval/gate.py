"""The promotion gate: every check with its numbers, pass or fail; nothing is routed without a passing decision.

Semantics follow MLflow's model validation: absolute thresholds plus minimum changes against baselines; a
missing metric fails; every failure is reported, not only the first. The baselines a candidate must beat:

- `beats base model`: the bare base model, generating under the same stop rule as every other model;
- `beats majority label`: for label tasks (exact match), always answering the most common label of the task's
  training instances;
- `beats champion`: the task's current champion, when there is one.

A score on 100 instances is a sample, so every comparison carries a paired bootstrap interval over instances
(`eval.intervals`) and a `min_gain_*` check passes only when the interval's **lower bound** clears its
threshold (lower bound >= threshold, observed gain > threshold). When the interval straddles the threshold the gate cannot decide, says so, and estimates how many
instances would show the observed gain. Absolute thresholds (`min_score`) pass on the observed mean and report
its interval. The decision is saved beside the adapter as `gate_decision.json`, bound to the adapter's weights
hash, with the stop rule and the bootstrap settings that produced it.

    specialist gate --candidate runs/sst2 --policy configs/gate.yaml [--champion DIR]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator

from eval.benchmarks import GENERALIST_TASK, Benchmark, GateMetric, Metric, generalist_benchmark, task_benchmark
from eval.intervals import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, DEFAULT_SEED, Interval, instances_needed
from eval.runner import EvalRun, run_eval
from specialist.adapters import ADAPTER_WEIGHTS, check_adapter, read_manifest
from specialist.adapters.decision import (
    BASE,
    CANDIDATE,
    CHAMPION,
    MAJORITY,
    Check,
    GateDecision,
    save_decision,
)
from specialist.adapters.model_card import write_model_card
from specialist.base_models import BaseModelRef
from specialist.config import StrictModel, load_yaml_config, validate_config
from specialist.errors import SpecialistError
from specialist.paths import sha256_file
from specialist.superni import HELD_OUT_INSTANCES

BEATS_BASE, BEATS_MAJORITY, BEATS_CHAMPION = "beats base model", "beats majority label", "beats champion"
KEEPS_GENERAL = "keeps general ability (ROUGE-L)"
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
    min_gain_over_majority: Gain | None = Field(
        0.0, description="candidate - majority label, over the label tasks (default: min_gain_over_base); null skips"
    )
    min_gain_over_champion: Gain | None = Field(
        0.0, description="candidate - current champion (negative = allowed regression); null skips"
    )
    metric_overrides: dict[str, Metric] = Field(default_factory=dict, description="task -> primary metric")
    retention: RetentionPolicy | None = None
    eval_instances: int | None = Field(
        None, ge=1, le=HELD_OUT_INSTANCES, description="score on the first N held-out instances only"
    )
    confidence: float = Field(
        DEFAULT_CONFIDENCE,
        gt=0,
        lt=1,
        description="a min_gain check passes when the lower bound of this interval clears it",
    )
    bootstrap_resamples: int = Field(
        DEFAULT_RESAMPLES, ge=1000, le=100_000, description="bootstrap resamples per interval"
    )
    bootstrap_seed: int = Field(
        DEFAULT_SEED, description="seed of the bootstrap: the same data gives the same decision"
    )

    @model_validator(mode="before")
    @classmethod
    def _majority_follows_base(cls, data):
        if isinstance(data, dict) and "min_gain_over_majority" not in data:
            data = {**data, "min_gain_over_majority": data.get("min_gain_over_base", 0.0)}
        return data

    def interval_options(self) -> dict:
        return {"confidence": self.confidence, "resamples": self.bootstrap_resamples, "seed": self.bootstrap_seed}


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
    """Loadable LoRA-only safetensors, a readable manifest, a known prompt format, the same base model: the
    adapter acceptability check every stage runs, one named check per aspect."""
    found = check_adapter(candidate, base.content_sha256, base.id)
    checks = [
        Check(
            name="valid LoRA-only PEFT adapter",
            passed=not found.lora_problems,
            detail="; ".join(found.lora_problems) or "ok",
        )
    ]
    if found.manifest is None:
        problem = found.manifest_error.problem if found.manifest_error else "no manifest"
        return checks + [
            Check(name=name, passed=False, detail=problem) for name in ("known prompt format", "same base model")
        ]
    manifest = found.manifest
    if found.prompt_format_error:
        checks.append(Check(name="known prompt format", passed=False, detail=found.prompt_format_error.problem))
    else:
        checks.append(
            Check(
                name="known prompt format",
                passed=True,
                detail=f"{manifest.prompt_format} v{manifest.prompt_format_version}",
            )
        )
    same = found.base_mismatch is None
    detail = (
        f"{base.id} ({base.content_sha256[:12]}...)"
        if same
        else f"trained for {manifest.base_model.id}, serving {base.id}"
    )
    checks.append(Check(name="same base model", passed=same, detail=detail))
    return checks


def benchmarks_for(candidate: Path, task_dir: Path, policy: GatePolicy) -> list[Benchmark]:
    manifest = read_manifest(candidate)
    return [
        task_benchmark(task_dir, task, policy.metric_overrides.get(task), limit=policy.eval_instances)
        for task in manifest.tasks
    ]


def decide(
    run: EvalRun, candidate: str, policy: GatePolicy, tasks: list[str], champion: str | None = None
) -> list[Check]:
    """The metric checks of `candidate` in an evaluation run that also scored the base model (and champion)."""
    checks: list[Check] = []
    options = policy.interval_options()

    def interval(
        model: str, reference: str | None = None, names: list[str] = tasks, metric: str = "score"
    ) -> Interval | None:
        if not names:
            return None  # nothing was evaluated (an unloadable candidate)
        try:
            return run.interval(model, reference, tasks=names, metric=metric, **options)
        except KeyError:
            return None  # a missing metric fails the check that needs it

    for metric, threshold in policy.min_score.items():
        checks.append(_at_least(f"mean {metric} >= {threshold:g}", interval(candidate, metric=metric), threshold))
    for metric, threshold in policy.per_task_min_score.items():
        for task in tasks:
            checks.append(
                _at_least(
                    f"{task} {metric} >= {threshold:g}", interval(candidate, names=[task], metric=metric), threshold
                )
            )
    if policy.min_gain_over_base is not None:
        checks.append(_gain(BEATS_BASE, interval(candidate, BASE), policy.min_gain_over_base, "the base model"))
    if policy.min_gain_over_majority is not None:
        label_tasks = [t for t in tasks if t in run.label_tasks]
        if not tasks:  # nothing was evaluated (an unloadable candidate): the check cannot be run
            checks.append(
                Check(
                    name=BEATS_MAJORITY, passed=False, threshold=policy.min_gain_over_majority, detail="metric missing"
                )
            )
        elif not label_tasks:
            checks.append(
                Check(
                    name=BEATS_MAJORITY, passed=True, detail="not applicable: no label task (exact-match metric) here"
                )
            )
        else:
            what = "the majority label" + ("" if label_tasks == tasks else f" on the {len(label_tasks)} label tasks")
            checks.append(
                _gain(BEATS_MAJORITY, interval(candidate, MAJORITY, label_tasks), policy.min_gain_over_majority, what)
            )
    if policy.min_gain_over_champion is not None:
        if champion is None:
            checks.append(Check(name=BEATS_CHAMPION, passed=True, detail="no champion yet"))
        else:
            checks.append(
                _gain(BEATS_CHAMPION, interval(candidate, champion), policy.min_gain_over_champion, "the champion")
            )
    if policy.retention is not None:
        change = interval(candidate, BASE, [GENERALIST_TASK], "rougeL")
        checks.append(_gain(KEEPS_GENERAL, change, -policy.retention.max_drop, "the base model on the generalist set"))
    return checks


def _at_least(name: str, interval: Interval | None, threshold: float) -> Check:
    """An absolute threshold: passes on the observed mean; the interval is reported."""
    if interval is None:
        return Check(name=name, passed=False, threshold=threshold, detail="metric missing")
    return Check(
        name=name,
        passed=interval.value >= threshold,
        value=interval.value,
        threshold=threshold,
        ci_low=interval.low,
        ci_high=interval.high,
        instances=interval.instances,
        detail="on the observed mean (the interval is reported)",
    )


def _gain(name: str, gain: Interval | None, min_gain: float, versus: str) -> Check:
    """A minimum gain: passes only when the interval's lower bound clears it; undecided when it straddles it."""
    if gain is None:
        return Check(name=name, passed=False, threshold=min_gain, detail="metric missing")
    pct = f"{round(100 * gain.confidence)}%"
    numbers = dict(value=gain.value, threshold=min_gain, ci_low=gain.low, ci_high=gain.high, instances=gain.instances)
    observed = f"gain over {versus} {gain.signed()} ({pct} interval)"
    # "Clears": the whole interval is at or above the threshold and the observed gain is above it, so a
    # candidate that merely equals its baseline (a gain of exactly 0 everywhere) never passes a 0 threshold.
    if gain.low >= min_gain and gain.value > min_gain:
        return Check(name=name, passed=True, **numbers, detail=f"{observed}: the lower bound clears {min_gain:+g}")
    if gain.value <= min_gain:  # not observed, so no amount of data would show it
        return Check(name=name, passed=False, **numbers, detail=f"{observed}: not above {min_gain:+g}")
    needed = instances_needed(gain, min_gain)
    return Check(
        name=name,
        passed=False,
        undecided=True,
        **numbers,
        detail=f"cannot decide: {observed} straddles the threshold {min_gain:+g}; "
        f"about {needed} instances per task (now {gain.instances}) would show the observed gain",
    )


def gate_adapter(
    candidate: Path,
    policy: GatePolicy,
    base: BaseModelRef,
    task_dir: Path,
    champion: Path | None = None,
    progress: bool = True,
    device: str = "auto",
) -> GateDecision:
    """Evaluate candidate, base (and champion) on the held-out instances in one pass, run every check, save and
    return the decision. The majority-label baseline of label tasks comes with the evaluation."""
    candidate = Path(candidate)
    checks = structural_checks(candidate, base)
    if champion is not None:
        bad = [c for c in structural_checks(Path(champion), base) if not c.passed]
        if bad:
            raise SpecialistError(
                f"champion {champion} is unusable: {bad[0].detail}", "pass a valid --champion or none"
            )
    scores: dict = {}
    if all(c.passed for c in checks):
        benchmarks = benchmarks_for(candidate, task_dir, policy)
        tasks = [b.name for b in benchmarks]
        if policy.retention is not None:
            benchmarks.append(generalist_benchmark(policy.retention.data, policy.retention.instances))
        adapters = {CANDIDATE: candidate} | ({CHAMPION: Path(champion)} if champion else {})
        run = run_eval(base, adapters, benchmarks, include_base=True, device=device, progress=progress)
        checks += decide(run, CANDIDATE, policy, tasks, CHAMPION if champion else None)
        scores = run.scores
    else:  # an adapter we cannot load has no metrics: every metric check fails as missing
        run = EvalRun(base.id, [], [])
        checks += decide(run, CANDIDATE, policy, [], CHAMPION if champion else None)
    decision = make_decision(candidate, checks, base, policy, scores, champion, run.stop_rule)
    save_decision(candidate, decision)
    write_model_card(candidate)  # the card shows the gate result and the scores with their intervals
    return decision


def make_decision(
    candidate: Path,
    checks: list[Check],
    base: BaseModelRef,
    policy: GatePolicy,
    scores: dict,
    champion: Path | None = None,
    stop_rule: dict | None = None,
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
        stop_rule=stop_rule or {},
    )


def checks_table(checks: list[Check], confidence: float = DEFAULT_CONFIDENCE) -> str:
    """The checks for people: every number, and each interval next to the value it bounds."""
    rows = [("check", "result", "value", f"{round(100 * confidence)}% interval", "threshold", "n", "detail")]
    for c in checks:
        rows.append(
            (
                c.name,
                "PASS" if c.passed else "UNDECIDED" if c.undecided else "FAIL",
                "" if c.value is None else f"{c.value:g}",
                "" if c.ci_low is None else f"[{c.ci_low:g}, {c.ci_high:g}]",
                "" if c.threshold is None else f"{c.threshold:g}",
                "" if c.instances is None else str(c.instances),
                c.detail,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)
