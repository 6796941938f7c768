"""`specialist eval score`: the official SuperNI scoring of prediction/reference files.

Reads the official formats -- predictions `{id, prediction}` and references `{id, references, task_id,
task_category, track}` (JSONL) -- and returns the official keys: `exact_match`, `rouge1`, `rougeL` overall,
`<metric>_for_<task_id>` and `<metric>_for_<category>` (category lower-cased, spaces to '_'), plus the same
with the official script's `_<track>_track` suffix. A missing prediction scores as the empty string.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from eval.metrics import score
from specialist.errors import SpecialistError
from specialist.jsonl import read_jsonl

OFFICIAL_METRICS = ("exact_match", "rouge1", "rougeL")


def _read_jsonl(path: Path, required: tuple[str, ...], what: str) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise SpecialistError(f"{what} file {path} does not exist", f"pass a JSONL file with {', '.join(required)}")
    rows = []
    for lineno, row in read_jsonl(path):
        missing = [k for k in required if not isinstance(row, dict) or k not in row]
        if missing:
            raise SpecialistError(
                f"{path}, line {lineno}: missing {', '.join(missing)}", f"{what} lines need {', '.join(required)}"
            )
        rows.append(row)
    if not rows:
        raise SpecialistError(f"{what} file {path} is empty", "nothing to score")
    return rows


def score_files(predictions_path: Path, references_path: Path) -> tuple[dict[str, float], int]:
    """(official results, number of references without a prediction)."""
    references = _read_jsonl(references_path, ("id", "references"), "references")
    predictions = {
        str(row["id"]): "" if row["prediction"] is None else str(row["prediction"]).strip()
        for row in _read_jsonl(predictions_path, ("id", "prediction"), "predictions")
    }
    by_track: dict[str, list[dict]] = defaultdict(list)
    for ref in references:
        if not isinstance(ref["references"], list) or not ref["references"]:
            raise SpecialistError(f"reference {ref['id']} has no references list", "each line needs references: [..]")
        by_track[ref.get("track", "default")].append(ref)
    if set(by_track) - {"default"}:
        raise SpecialistError(
            f"tracks {sorted(set(by_track) - {'default'})} are not supported",
            "the xlingual track needs the GPT-2 tokenizer of the official script; score the default track only",
        )
    results: dict[str, float] = {}
    missing = 0
    for track, refs in by_track.items():
        preds = [predictions.get(str(r["id"])) for r in refs]
        missing += sum(p is None for p in preds)
        gold = [[str(x) for x in r["references"]] for r in refs]
        groups: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(refs):
            if "task_id" in r:
                groups[r["task_id"]].append(i)
            if "task_category" in r:
                groups["_".join(str(r["task_category"]).lower().split())].append(i)
        overall = score(preds, gold, OFFICIAL_METRICS)
        for metric, value in overall.items():
            results[metric] = value
            results[f"{metric}_{track}_track"] = value
        for group, idx in groups.items():
            for metric, value in score([preds[i] for i in idx], [gold[i] for i in idx], OFFICIAL_METRICS).items():
                results[f"{metric}_for_{group}"] = value
                results[f"{metric}_for_{group}_{track}_track"] = value
    return results, missing


def write_official_files(out: Path, benchmarks, predictions: dict[str, dict[str, list[str]]]) -> None:
    """`references.jsonl` and one `predictions_<model>.jsonl` per model, in the official formats.

    Files of an earlier run in the same folder are replaced, never mixed with this run's.
    """
    for stale in [*out.glob("predictions_*.jsonl"), out / "references.jsonl"]:
        stale.unlink(missing_ok=True)
    with open(out / "references.jsonl", "w") as f:
        for bench in benchmarks:
            for inst in bench.instances:
                row = {
                    "id": inst.id,
                    "references": inst.references,
                    "task_id": bench.name,
                    "task_category": bench.category,
                    "track": bench.track,
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    for model, by_task in predictions.items():
        with open(out / f"predictions_{model}.jsonl", "w") as f:
            for bench in benchmarks:
                for inst, pred in zip(bench.instances, by_task[bench.name]):
                    f.write(json.dumps({"id": inst.id, "prediction": pred}, ensure_ascii=False) + "\n")
