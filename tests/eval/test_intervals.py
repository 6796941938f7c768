"""Bootstrap intervals: a hand-computed case, a known distribution, pairing, seeds and reproducibility."""

import math
import random

import pytest

from eval.intervals import Interval, bootstrap, instances_needed


def test_hand_computed_two_instances():
    # Instances scoring 0 and 100: a resample's mean is 0, 50 or 100 with probability 1/4, 1/2, 1/4.
    scores = [{"t": [0.0, 100.0]}]
    wide = bootstrap(scores, confidence=0.9, resamples=4000)
    assert (wide.value, wide.low, wide.high) == (50.0, 0.0, 100.0)  # the 5% and 95% points fall in the outer quarters
    narrow = bootstrap(scores, confidence=0.4, resamples=4000)
    assert (narrow.low, narrow.high) == (50.0, 50.0)  # the 30% and 70% points both fall in the middle half
    constant = bootstrap([{"t": [70.0] * 9}], confidence=0.9)
    assert (constant.value, constant.low, constant.high) == (70.0, 70.0, 70.0)


def test_known_distribution_matches_the_normal_approximation():
    rng = random.Random(3)
    n, p = 1000, 0.3
    scores = [{"t": [100.0 * (rng.random() < p) for _ in range(n)]}]
    interval = bootstrap(scores, confidence=0.9, resamples=4000)
    mean = interval.value / 100
    half = 1.6449 * math.sqrt(mean * (1 - mean) / n) * 100  # 90% normal interval of a proportion
    assert interval.low < interval.value < interval.high
    assert (interval.high - interval.low) / 2 == pytest.approx(half, rel=0.12)


def test_paired_differences_cancel_shared_noise():
    rng = random.Random(0)
    base = [100.0 * (rng.random() < 0.5) for _ in range(200)]
    better = [min(100.0, b + 10) for b in base]  # +10 on every instance that is not already perfect
    paired = bootstrap([{"t": better}], [{"t": base}], confidence=0.9)
    assert paired.low > 0 and paired.high - paired.low < 3  # only the ceiling varies
    unpaired_width = bootstrap([{"t": better}], confidence=0.9).high - bootstrap([{"t": better}], confidence=0.9).low
    assert unpaired_width > 5 * (paired.high - paired.low)


def test_mean_over_tasks_and_seeded_reproducibility():
    scores = [{"a": [0.0, 100.0, 100.0, 0.0], "b": [100.0] * 4}]
    one = bootstrap(scores, confidence=0.9, seed=7)
    assert one.value == 75.0 and one.tasks == 2 and one.instances == 4
    assert bootstrap(scores, confidence=0.9, seed=7) == one
    rng = random.Random(1)
    noisy = [{"t": [rng.uniform(0, 100) for _ in range(100)]}]
    a, b = bootstrap(noisy, confidence=0.9, seed=7), bootstrap(noisy, confidence=0.9, seed=8)
    assert a == bootstrap(noisy, confidence=0.9, seed=7) and a.value == b.value and (a.low, a.high) != (b.low, b.high)


def test_seeds_are_resampled_as_whole_runs():
    # Three training seeds that disagree: the interval must cover their spread, not only instance noise.
    runs = [{"t": [s] * 50} for s in (40.0, 50.0, 60.0)]
    interval = bootstrap(runs, confidence=0.95)
    assert interval.seeds == 3 and interval.value == 50.0
    assert interval.low <= 43.4 and interval.high >= 56.6  # 40 and 60 are each drawn alone or nearly
    assert bootstrap([runs[1]], confidence=0.95).high == 50.0  # one seed, no instance noise: no width


def test_instances_needed_for_an_observed_gain():
    interval = Interval(value=2.0, low=-1.0, high=5.0, confidence=0.9, instances=100, tasks=1)
    assert instances_needed(interval, 0.0) == 225  # (3 / 2)^2 x 100: the half-width must shrink to the gain
    assert instances_needed(interval, 2.5) is None  # the observed gain does not clear the threshold


def test_pairs_must_score_the_same_instances():
    with pytest.raises(ValueError, match="score 50 and 1 instances"):
        bootstrap([{"t": [100.0] * 50}], [{"t": [0.0]}], confidence=0.9)


def test_large_sets_are_resampled_in_chunks_with_the_same_statistics():
    rng = random.Random(2)
    big = [{"t": [100.0 * (rng.random() < 0.4) for _ in range(5000)]}]
    interval = bootstrap(big, confidence=0.9, resamples=2000)  # 10M resampled scores: several chunks
    half = 1.6449 * math.sqrt(0.24 / 5000) * 100
    assert (interval.high - interval.low) / 2 == pytest.approx(half, rel=0.12)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="confidence"):
        bootstrap([{"t": [1.0]}], confidence=1.0)
    with pytest.raises(ValueError, match="one score set per seed"):
        bootstrap([{"t": [1.0]}], [], confidence=0.9)
