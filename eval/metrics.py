"""The official Super-NaturalInstructions metrics (compute_metrics.py of allenai/natural-instructions).

- ROUGE-L F-measure from rouge-score with use_stemmer=True and its default tokenizer.
- Exact match after lower-casing, removing string.punctuation and collapsing whitespace (articles kept).
- Each metric takes the max over the references separately; scores are averaged and x100.
"""

from __future__ import annotations

import functools
import string

_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


@functools.lru_cache(maxsize=2)
def _scorer(kind: str):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([kind], use_stemmer=True)


def rouge_l(prediction: str, reference: str) -> float:
    return _scorer("rougeL").score(reference, prediction)["rougeL"].fmeasure


def rouge_1(prediction: str, reference: str) -> float:
    return _scorer("rouge1").score(reference, prediction)["rouge1"].fmeasure


def best_over_references(metric, prediction: str | None, references: list[str]) -> float:
    prediction = prediction or ""  # a missing prediction scores as the empty string
    return max(metric(prediction, ref) for ref in references)


METRIC_FUNCTIONS = {"exact_match": exact_match, "rouge1": rouge_1, "rougeL": rouge_l}


def instance_scores(
    predictions: list[str | None], references: list[list[str]], metrics: tuple[str, ...] = ("exact_match", "rougeL")
) -> dict[str, list[float]]:
    """Each metric per instance (max over its references), x100: what intervals resample."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    return {
        m: [100.0 * best_over_references(METRIC_FUNCTIONS[m], p, r) for p, r in zip(predictions, references)]
        for m in metrics
    }


def mean_score(values: list[float]) -> float:
    """The official aggregate of per-instance scores: mean, 4 decimals (0 for no instances)."""
    return round(sum(values) / max(1, len(values)), 4)


def score(
    predictions: list[str | None], references: list[list[str]], metrics: tuple[str, ...] = ("exact_match", "rougeL")
) -> dict[str, float]:
    """Each metric over aligned predictions/references: max over references, mean, x100, 4 decimals."""
    return {m: mean_score(v) for m, v in instance_scores(predictions, references, metrics).items()}
