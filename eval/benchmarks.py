"""Task benchmarks: held-out instances + a metric + how to prompt for them.

- A task (SuperNI, or an inline task file): its evaluation instances (for SuperNI the first 100, the
  held-out rule of `specialist.superni`), its definition and positive examples.
- Custom: JSONL `{id, input, references}` with a definition and a metric.
The primary metric defaults to exact match for label-like references and ROUGE-L otherwise; both are always
computed and reported. A SuperNI label task (exact match) also carries its **majority label**: the most common
answer among the task's training instances (never its evaluation instances), the trivial baseline a
specialist must beat.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eval.metrics import normalize_answer
from specialist.errors import SpecialistError
from specialist.jsonl import iter_lines
from specialist.prompt_format import DEFAULT_NUM_EXAMPLES, TaskPrompt
from specialist.superni import load_task
from specialist.tasks import Instance, training_pool

Metric = Literal["exact_match", "rougeL"]
METRICS: tuple[str, ...] = ("exact_match", "rougeL")
GateMetric = Literal["score", Metric]  # what a gate threshold names: 'score' = each task's primary metric
# References count as labels when each is at most this many words and there are few distinct ones.
LABEL_MAX_WORDS = 3
LABEL_MAX_DISTINCT = 20
GENERALIST_TASK = "generalist"  # the name of the retention benchmark in results


class BenchInstance(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    input: str
    references: list[str] = Field(min_length=1)
    definition: str | None = Field(None, description="per-instance instruction (generalist sets), else the benchmark's")


class MajorityLabel(BaseModel):
    """The most common answer of a task's training instances. Ties go to the label first in alphabetical order
    (of the normalised labels), so the baseline depends on the training data alone; `tied` lists the others."""

    model_config = ConfigDict(frozen=True)
    label: str
    count: int
    of: int
    tied: tuple[str, ...] = ()


class Benchmark(BaseModel):
    name: str = Field(description="task name; an adapter whose manifest knows it is prompted from the manifest")
    metric: Metric
    category: str = ""
    track: str = "default"
    prompt: TaskPrompt
    instances: list[BenchInstance]
    majority: MajorityLabel | None = Field(None, description="label tasks only: the majority-label baseline")
    labels: tuple[str, ...] = Field((), description="label tasks only: the normalised label set, for confusion tables")


def majority_label(training: tuple[Instance, ...] | list[Instance]) -> MajorityLabel | None:
    """The most common (normalised) first reference among training instances; None when there are none."""
    counts = Counter(normalize_answer(i.output[0]) for i in training if i.has_output)
    if not counts:
        return None
    top = max(counts.values())
    tied = sorted(label for label, n in counts.items() if n == top)
    # Report the label as it is written most often, not in its normalised form.
    spelled = Counter(
        i.output[0].strip() for i in training if i.has_output and normalize_answer(i.output[0]) == tied[0]
    )
    return MajorityLabel(label=spelled.most_common(1)[0][0], count=top, of=sum(counts.values()), tied=tuple(tied[1:]))


def default_metric(references: list[list[str]]) -> Metric:
    """Exact match for classification-like tasks (short labels from a small set), ROUGE-L otherwise."""
    flat = [r for refs in references for r in refs]
    short = all(len(r.split()) <= LABEL_MAX_WORDS for r in flat)
    distinct = {r.strip().lower() for r in flat}
    return "exact_match" if short and len(distinct) <= LABEL_MAX_DISTINCT else "rougeL"


def task_benchmark(
    task_dir: Path,
    name: str,
    metric: Metric | None = None,
    num_examples: int = DEFAULT_NUM_EXAMPLES,
    limit: int | None = None,
) -> Benchmark:
    task = load_task(task_dir, name)
    held_out = task.evaluation
    if not held_out:
        raise SpecialistError(f"task {name} has no instances to evaluate on", "pick a task with instances")
    # An instance without references is scored against "" (as the official script would score a missing one).
    instances = [BenchInstance(id=i.id, input=i.input, references=list(i.output) or [""]) for i in held_out]
    # The metric is chosen from the whole held-out set, so --eval-instances never changes which metric a task uses.
    metric = metric or default_metric([i.references for i in instances])
    _, training = training_pool(task)
    label_task = metric == "exact_match"
    labels = {normalize_answer(r) for i in (*held_out, *training) for r in i.output} if label_task else set()
    return Benchmark(
        name=name,
        metric=metric,
        category=task.categories[0] if task.categories else "",
        prompt=task.prompt(num_examples),
        instances=instances[:limit] if limit is not None else instances,
        majority=majority_label(training) if label_task else None,
        labels=tuple(sorted(labels)) if len(labels) <= LABEL_MAX_DISTINCT else (),
    )


def selection_benchmark(
    task_dir: Path, name: str, size: int, metric: Metric | None = None, num_examples: int = DEFAULT_NUM_EXAMPLES
) -> Benchmark:
    """The selection set of a task (see `specialist.tasks.training_pool`), scored with the task's own metric."""
    held_out = task_benchmark(task_dir, name, metric, num_examples)
    selection, _ = training_pool(load_task(task_dir, name), size)
    instances = [BenchInstance(id=i.id, input=i.input, references=list(i.output)) for i in selection]
    return held_out.model_copy(update={"instances": instances, "majority": None})


def custom_benchmark(path: Path, name: str, definition: str, metric: Metric | None = None) -> Benchmark:
    """A JSONL file of `{id, input, references}` evaluated under `definition`."""
    path = Path(path)
    if not path.is_file():
        raise SpecialistError(f"benchmark file {path} does not exist", "pass a JSONL file of {id, input, references}")
    instances = []
    for lineno, line in iter_lines(path):
        try:
            instances.append(BenchInstance.model_validate_json(line))
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"]) or "line"
            raise SpecialistError(
                f"{path}, line {lineno}: {where}: {err['msg']}", "each line needs id, input and references"
            ) from None
    if not instances:
        raise SpecialistError(
            f"benchmark file {path} has no instances", "add at least one {id, input, references} line"
        )
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
        raise SpecialistError(
            f"generalist benchmark {path} does not exist", "pass user_oriented_252.jsonl or a file like it"
        )
    instances = []
    for lineno, line in iter_lines(path):
        try:
            row = json.loads(line)
            first = row["instances"][0]
            instances.append(
                BenchInstance(
                    id=str(row.get("id", lineno)),
                    input=first.get("input", ""),
                    references=[first["output"]],
                    definition=row["instruction"],
                )
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError, ValidationError):
            raise SpecialistError(
                f"{path}, line {lineno}: not an {{instruction, instances}} record", "fix that line"
            ) from None
        if len(instances) == limit:
            break
    if not instances:
        raise SpecialistError(
            f"generalist benchmark {path} has no records", "pass a file with {instruction, instances} lines"
        )
    return Benchmark(
        name=GENERALIST_TASK, metric="rougeL", prompt=TaskPrompt(definition="", num_examples=0), instances=instances
    )
