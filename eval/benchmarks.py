"""Task benchmarks: held-out instances + a metric + how to prompt for them.

- SuperNI: a task's first 100 instances (the held-out rule of `specialist.superni`), its definition and
  positive examples.
- Custom: JSONL `{id, input, references}` with a definition and a metric.
The primary metric defaults to exact match for label-like references and ROUGE-L otherwise; both are always
computed and reported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from specialist.errors import SpecialistError
from specialist.prompt_format import DEFAULT_NUM_EXAMPLES, TaskPrompt
from specialist.superni import load_task, split_instances

Metric = Literal["exact_match", "rougeL"]
METRICS: tuple[str, ...] = ("exact_match", "rougeL")
GateMetric = Literal["score", Metric]  # what a gate threshold names: 'score' = each task's primary metric
# References count as labels when each is at most this many words and there are few distinct ones.
LABEL_MAX_WORDS = 3
LABEL_MAX_DISTINCT = 20


class BenchInstance(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    input: str
    references: list[str] = Field(min_length=1)
    definition: str | None = Field(None, description="per-instance instruction (generalist sets), else the benchmark's")


class Benchmark(BaseModel):
    name: str = Field(description="task name; an adapter whose manifest knows it is prompted from the manifest")
    metric: Metric
    category: str = ""
    track: str = "default"
    prompt: TaskPrompt
    instances: list[BenchInstance]


def default_metric(references: list[list[str]]) -> Metric:
    """Exact match for classification-like tasks (short labels from a small set), ROUGE-L otherwise."""
    flat = [r for refs in references for r in refs]
    short = all(len(r.split()) <= LABEL_MAX_WORDS for r in flat)
    distinct = {r.strip().lower() for r in flat}
    return "exact_match" if short and len(distinct) <= LABEL_MAX_DISTINCT else "rougeL"


def superni_benchmark(
    task_dir: Path, name: str, metric: Metric | None = None, num_examples: int = DEFAULT_NUM_EXAMPLES, limit: int | None = None
) -> Benchmark:
    task = load_task(task_dir, name)
    held_out, _ = split_instances(task)
    if not held_out:
        raise SpecialistError(f"task {name} has no instances to evaluate on", "pick a task with instances")
    # An instance without references is scored against "" (as the official script would score a missing one).
    instances = [BenchInstance(id=i.id, input=i.input, references=list(i.output) or [""]) for i in held_out]
    # The metric is chosen from the whole held-out set, so --eval-instances never changes which metric a task uses.
    metric = metric or default_metric([i.references for i in instances])
    return Benchmark(
        name=name,
        metric=metric,
        category=task.categories[0] if task.categories else "",
        prompt=task.prompt(num_examples),
        instances=instances[:limit] if limit is not None else instances,
    )


def custom_benchmark(path: Path, name: str, definition: str, metric: Metric | None = None) -> Benchmark:
    """A JSONL file of `{id, input, references}` evaluated under `definition`."""
    path = Path(path)
    if not path.is_file():
        raise SpecialistError(f"benchmark file {path} does not exist", "pass a JSONL file of {id, input, references}")
    instances = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            instances.append(BenchInstance.model_validate_json(line))
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"]) or "line"
            raise SpecialistError(f"{path}, line {lineno}: {where}: {err['msg']}", "each line needs id, input and references") from None
    if not instances:
        raise SpecialistError(f"benchmark file {path} has no instances", "add at least one {id, input, references} line")
    ids = [i.id for i in instances]
    if len(set(ids)) != len(ids):
        raise SpecialistError(f"benchmark file {path} repeats ids", "give every instance a unique id")
    return Benchmark(
        name=name,
        metric=metric or default_metric([i.references for i in instances]),
        prompt=TaskPrompt(definition=definition, num_examples=0),
        instances=instances,
    )


def generalist_benchmark(path: Path, limit: int = 100) -> Benchmark:
    """Self-Instruct's user-oriented set (`{instruction, instances: [{input, output}]}` per line), scored with
    ROUGE-L: a check that a specialist keeps some general ability. One instance per instruction."""
    path = Path(path)
    if not path.is_file():
        raise SpecialistError(f"generalist benchmark {path} does not exist", "pass user_oriented_252.jsonl or a file like it")
    instances = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            first = row["instances"][0]
            instances.append(
                BenchInstance(
                    id=str(row.get("id", lineno)), input=first.get("input", ""), references=[first["output"]], definition=row["instruction"]
                )
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError, ValidationError):
            raise SpecialistError(f"{path}, line {lineno}: not an {{instruction, instances}} record", "fix that line") from None
        if len(instances) == limit:
            break
    if not instances:
        raise SpecialistError(f"generalist benchmark {path} has no records", "pass a file with {instruction, instances} lines")
    return Benchmark(name="generalist", metric="rougeL", prompt=TaskPrompt(definition="", num_examples=0), instances=instances)
