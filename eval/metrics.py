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


@functools.lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, reference: str) -> float:
    return _scorer().score(reference, prediction)["rougeL"].fmeasure


def best_over_references(metric, prediction: str | None, references: list[str]) -> float:
    prediction = prediction or ""  # a missing prediction scores as the empty string
    return max(metric(prediction, ref) for ref in references)


def score(predictions: list[str | None], references: list[list[str]]) -> dict[str, float]:
    """{'exact_match', 'rougeL'} over aligned predictions/references, x100, 4 decimals."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        return {"exact_match": 0.0, "rougeL": 0.0}
    em = sum(best_over_references(exact_match, p, r) for p, r in zip(predictions, references))
    rl = sum(best_over_references(rouge_l, p, r) for p, r in zip(predictions, references))
    n = len(references)
    return {"exact_match": round(100.0 * em / n, 4), "rougeL": round(100.0 * rl / n, 4)}
