"""Build a training mixture: task instances plus generalist records, seeded and recorded.

Follows open-instruct's design: each source is an absolute count (or a ratio of the specialist examples),
up-sampled by whole repeats plus seeded extras, then concatenated and shuffled with the seed. The realized
counts, the sources' sizes and content hashes go into the manifest.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from specialist.adapters import MixtureRecord, SourceInfo
from specialist.config import MixtureConfig
from specialist.errors import SpecialistError
from specialist.generalist import filter_records, load_generalist
from specialist.prompt_format import TaskPrompt, render_response
from specialist.superni import load_task, select_tasks
from specialist.tasks import training_pool

GENERALIST = "generalist"


@dataclass(frozen=True)
class TrainExample:
    """One supervised example. The prompt is rendered later, so an overlong one can drop demonstrations."""

    prompt: TaskPrompt
    input: str
    output: str
    source: str  # task name, or GENERALIST

    @property
    def response(self) -> str:
        return render_response(self.output)


@dataclass(frozen=True)
class Mixture:
    examples: list[TrainExample]
    record: MixtureRecord
    task_prompts: dict[str, TaskPrompt]


def build_mixture(cfg: MixtureConfig) -> Mixture:
    rng = random.Random(cfg.seed)
    task_names = select_tasks(cfg.task_data, cfg.task, cfg.category, cfg.task_list)
    examples: list[TrainExample] = []
    sources: dict[str, SourceInfo] = {}
    prompts: dict[str, TaskPrompt] = {}
    per_task: dict[str, int] = {}
    for name in task_names:
        task = load_task(cfg.task_data, name)
        _, trainable = training_pool(task, cfg.selection_instances)
        wanted = len(trainable) if cfg.instances_per_task == "all" else cfg.instances_per_task
        if wanted > len(trainable):
            reserved = f" and {cfg.selection_instances} reserved for selection" if cfg.selection_instances else ""
            raise SpecialistError(
                f"task {name} has {len(trainable)} trainable instances (after the {len(task.evaluation)} held out "
                f"for evaluation{reserved}), but {wanted} were requested",
                f"use --instances-per-task {len(trainable)} or fewer, or 'all'"
                + (", or fewer --selection-instances" if cfg.selection_instances else ""),
            )
        if wanted == 0:
            raise SpecialistError(
                f"task {name} has no instances with answers left after the held-out set", "pick another task"
            )
        prompt = task.prompt(cfg.num_examples)
        prompts[name] = prompt
        chosen = rng.sample(trainable, wanted)
        examples += [TrainExample(prompt, inst.input, inst.output[0], name) for inst in chosen]
        per_task[name] = wanted
        sources[name] = SourceInfo(
            source=str(task.path),
            sha256=task.sha256,
            available=len(trainable),
            used=wanted,
            license=", ".join(task.licenses) or None,
        )

    generalist_n = _generalist_count(cfg, len(examples))
    if generalist_n:
        data = load_generalist(cfg.generalist_data)
        records = filter_records(data.records, cfg.generalist_filter)
        if not records:
            raise SpecialistError(
                f"the {cfg.generalist_filter} filter left no generalist records", "use --generalist-filter none"
            )
        picks = _upsample(len(records), generalist_n, rng)
        examples += [
            TrainExample(TaskPrompt(definition=r.instruction, num_examples=0), r.input, r.output, GENERALIST)
            for r in (records[i] for i in picks)
        ]
        sources[GENERALIST] = SourceInfo(
            source=data.source, sha256=data.sha256, available=len(records), used=generalist_n, license=data.license
        )

    rng.shuffle(examples)
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(f"{ex.source}\x00{ex.prompt.definition}\x00{ex.input}\x00{ex.output}\x01".encode())
    record = MixtureRecord(
        spec=cfg.model_dump(mode="json", include=set(MixtureConfig.model_fields)),
        specialist_examples=sum(per_task.values()),
        generalist_examples=generalist_n,
        per_task=per_task,
        sources=sources,
        content_sha256=digest.hexdigest(),
    )
    return Mixture(examples=examples, record=record, task_prompts=prompts)


def _generalist_count(cfg: MixtureConfig, specialist_n: int) -> int:
    if cfg.generalist_count is not None:
        return cfg.generalist_count
    if cfg.generalist_ratio is not None:
        return round(cfg.generalist_ratio * specialist_n)
    return 0


def _upsample(available: int, wanted: int, rng: random.Random) -> list[int]:
    """`wanted` indices into `available` records: whole repeats, then a seeded sample for the remainder."""
    repeats, extra = divmod(wanted, available)
    return list(range(available)) * repeats + rng.sample(range(available), extra)
