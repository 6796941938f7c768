"""A task as every stage reads it, with its evaluation split explicit, and the inline task file.

A task comes from a **task source**, a path (`specialist.superni.load_task` reads both kinds):
- a folder of SuperNI task files: the upstream format, whose first 100 instances are held out
  (`specialist.superni`);
- an **inline task file** (`InlineTask`, JSON): instances sent to the service, or written by hand, whose
  evaluation and training instances are listed separately, so the split is the one its author chose.

Either way a `Task` holds `evaluation` (never trained on) and `trainable` apart; nothing downstream
re-applies a split. The selection rule (`training_pool`) lives here too: when candidates are compared
(`specialist build`), the last answered instances of the training pool form a *selection set* that no
candidate trains on, so the choice is made on data disjoint from both training and evaluation.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from specialist.errors import SpecialistError
from specialist.prompt_format import Example, TaskPrompt


class Instance(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    input: str
    output: list[str] = Field(description="references; a few upstream instances have none or only ''")

    @property
    def has_output(self) -> bool:
        return bool(self.output) and bool(self.output[0].strip())


class Task(BaseModel):
    """One task, reduced to what the factory uses."""

    model_config = ConfigDict(frozen=True)
    name: str
    path: Path | None = Field(description="the file it was read from (None: not written yet)")
    sha256: str
    definition: str
    positive_examples: tuple[Example, ...]
    categories: tuple[str, ...]
    evaluation: tuple[Instance, ...] = Field(description="held out: scored, never trained on")
    trainable: tuple[Instance, ...] = Field(description="what training (and the selection set) may draw from")
    licenses: tuple[str, ...] = Field((), description="the instances' licence(s) (SuperNI: 'Instance License')")

    def prompt(self, num_examples: int) -> TaskPrompt:
        return TaskPrompt(definition=self.definition, examples=self.positive_examples, num_examples=num_examples)


def training_pool(task: Task, selection: int = 0) -> tuple[tuple[Instance, ...], tuple[Instance, ...]]:
    """(selection instances, instances training may draw from), both with answers and outside the evaluation set.

    The selection set is the last `selection` answered instances of the pool: fixed by the task alone (not
    by a seed), so every candidate and every seed is compared on the same instances and none trains on them."""
    answered = tuple(i for i in task.trainable if i.has_output)  # nothing to learn from (or score) in an empty answer
    if selection > len(answered):
        raise SpecialistError(
            f"task {task.name} has {len(answered)} answered instances after the {len(task.evaluation)} held out, "
            f"fewer than the {selection} asked for its selection set",
            "ask for a smaller selection set (selection_instances), or compare a single candidate (no selection set)",
        )
    cut = len(answered) - selection
    return answered[cut:], answered[:cut]


class InlineTask(BaseModel):
    """The inline task file: a task given as instances, with its evaluation set stated, not implied."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    definition: str = Field(min_length=1)
    positive_examples: tuple[Example, ...] = ()
    categories: tuple[str, ...] = ("Custom",)
    evaluation: tuple[Instance, ...] = Field(min_length=1, description="scored, never trained on")
    training: tuple[Instance, ...] = Field(description="the instances training may draw from")

    def as_task(self, path: Path | None = None, sha256: str = "") -> Task:
        return Task(
            name=self.name,
            path=path,
            sha256=sha256,
            definition=self.definition,
            positive_examples=self.positive_examples,
            categories=self.categories,
            evaluation=self.evaluation,
            trainable=self.training,
        )


def write_inline_task(path: Path, task: InlineTask) -> Path:
    """Write `task` to `path` atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(task.model_dump_json(indent=1) + "\n")
    tmp.replace(path)
    return path


def read_inline_task(path: Path) -> Task:
    from specialist.paths import sha256_file

    path = Path(path)
    try:
        inline = InlineTask.model_validate_json(path.read_bytes())
    except OSError as e:
        raise SpecialistError(f"{path}: cannot read: {e}", "fix or replace the file") from None
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(map(str, err["loc"])) or "file"
        raise SpecialistError(
            f"{path} is not an inline task file: {where}: {err['msg']}",
            "expected JSON with name, definition, evaluation and training (instances of {id, input, output})",
        ) from None
    return inline.as_task(path, sha256_file(path))
