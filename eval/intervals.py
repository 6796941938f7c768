"""Bootstrap intervals over evaluation instances (and seeds), so a comparison says how sure it is.

A score on 50 or 100 instances is a sample: another 100 instances of the same task would give another number.
`bootstrap` resamples the instances of each task with replacement (and, when a result comes from several
training seeds, the seeds too), recomputes the statistic -- the mean over tasks of each task's mean -- and
reads the interval off the percentiles of the resampled statistics:

    Interval(value=6.0, low=1.0, high=11.0, confidence=0.9, ...)   # candidate - base: 90% sure it is in 1..11

Paired: a difference `a - b` is resampled on the *same* instance indices (and seeds) for both sides, so noise the
two models share -- an easy instance both get right -- cancels. Seeded, so a gate decision is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from specialist.adapters.decision import DEFAULT_CONFIDENCE  # noqa: F401  (owned there; re-exported)

DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0

_CHUNK_NUMBERS = 4_000_000  # resampled scores held at once (32 MB): large sets are resampled in chunks

# Per-instance scores of one model: task -> one score per instance (0..100), instances in benchmark order.
InstanceScores = Mapping[str, Sequence[float]]


class Interval(BaseModel):
    """A statistic with its bootstrap interval. `instances` is per task (the smallest task's count)."""

    model_config = ConfigDict(frozen=True)
    value: float
    low: float
    high: float
    confidence: float
    instances: int
    tasks: int
    seeds: int = 1
    resamples: int = DEFAULT_RESAMPLES

    def __str__(self) -> str:
        return f"{self.value:.1f} [{self.low:.1f}, {self.high:.1f}]"

    def signed(self) -> str:
        return f"{self.value:+.1f} [{self.low:+.1f}, {self.high:+.1f}]"


def bootstrap(
    a: Sequence[InstanceScores],
    b: Sequence[InstanceScores] | None = None,
    *,
    confidence: float,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """Interval of mean-over-tasks of `a` (or of `a - b`, paired). Each sequence holds one entry per seed.

    Every entry must score the same tasks on the same instances; `b[k]` pairs with `a[k]` (same seed)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    if not a or (b is not None and len(b) != len(a)):
        raise ValueError("bootstrap needs one score set per seed on each side")
    tasks = sorted(a[0])
    if not tasks:
        raise ValueError("bootstrap needs at least one task")
    diffs = {}
    for task in tasks:
        rows = np.array([run[task] for run in a], dtype=np.float64)  # [seeds, instances]
        if b is not None:
            other = np.array([run[task] for run in b], dtype=np.float64)
            if other.shape != rows.shape:
                raise ValueError(
                    f"task {task}: the two sides score {rows.shape[-1]} and {other.shape[-1]} instances; pairs need the same"
                )
            rows = rows - other
        if rows.ndim != 2 or rows.shape[1] == 0:
            raise ValueError(f"task {task}: every seed needs the same, non-empty list of instance scores")
        diffs[task] = rows
    seeds = len(a)
    point = float(np.mean([d.mean() for d in diffs.values()]))
    rng = np.random.default_rng(seed)
    # Seeds are drawn once per resample and shared by every task: a seed is one whole training run.
    seed_draw = (
        rng.integers(0, seeds, size=(resamples, seeds)) if seeds > 1 else np.zeros((resamples, 1), dtype=np.int64)
    )
    total = np.zeros(resamples)
    for task in tasks:
        d = diffs[task]
        n = d.shape[1]
        step = max(1, _CHUNK_NUMBERS // (n * seeds))
        for start in range(0, resamples, step):
            stop = min(resamples, start + step)
            draw = rng.integers(0, n, size=(stop - start, n))
            per_seed = d[:, draw].mean(axis=-1)  # [seeds, chunk]: each seed's mean over the drawn instances
            total[start:stop] += per_seed[seed_draw[start:stop], np.arange(stop - start)[:, None]].mean(axis=-1)
    total /= len(tasks)
    low, high = np.quantile(total, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(
        value=round(point, 4),
        low=round(float(low), 4),
        high=round(float(high), 4),
        confidence=confidence,
        instances=min(d.shape[1] for d in diffs.values()),
        tasks=len(tasks),
        seeds=seeds,
        resamples=resamples,
    )


def instances_needed(interval: Interval, threshold: float) -> int | None:
    """About how many instances per task would make the observed gain's lower bound clear `threshold`.

    The interval's lower half-width shrinks as 1/sqrt(n); None when the observed value does not exceed the
    threshold (no amount of data shows a gain that was not observed)."""
    margin = interval.value - threshold
    if margin <= 0:
        return None
    half = interval.value - interval.low
    if half <= 0:
        return interval.instances
    return max(interval.instances + 1, math.ceil(interval.instances * (half / margin) ** 2))
