"""Super-NaturalInstructions task files (upstream JSON format, optionally gzipped) and the held-out rule.

The held-out rule lives here and only here: the first `HELD_OUT_INSTANCES` instances of every task are its
evaluation set and are never trained on (`split_instances`). Training and evaluation both call it. A task file
may set `"Held Out Instances": N` (an extension of the upstream format, used for data sent to the service) to
hold out its first N instead.

The selection rule lives here too: when candidates are compared (`specialist build`), the last answered
instances of the training pool form a *selection set* that no candidate trains on (`training_pool`), so the
choice is made on data disjoint from both training and the held-out evaluation set.
"""

from __future__ import annotations

import difflib
import functools
import gzip
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from specialist.errors import SpecialistError
from specialist.paths import sha256_file, specialist_home
from specialist.prompt_format import Example, TaskPrompt

HELD_OUT_INSTANCES = 100
HELD_OUT_KEY = "Held Out Instances"
TASK_SUFFIXES = (".json.gz", ".json")


class Instance(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    input: str
    output: list[str] = Field(description="references; a few upstream instances have none or only ''")

    @property
    def has_output(self) -> bool:
        return bool(self.output) and bool(self.output[0].strip())


class SuperNITask(BaseModel):
    """One task file, reduced to what the factory uses."""

    model_config = ConfigDict(frozen=True)
    name: str
    path: Path
    sha256: str
    definition: str
    positive_examples: tuple[Example, ...]
    categories: tuple[str, ...]
    instances: tuple[Instance, ...]
    held_out: int = HELD_OUT_INSTANCES

    def prompt(self, num_examples: int) -> TaskPrompt:
        return TaskPrompt(definition=self.definition, examples=self.positive_examples, num_examples=num_examples)


def split_instances(task: SuperNITask) -> tuple[tuple[Instance, ...], tuple[Instance, ...]]:
    """(held-out evaluation instances, trainable instances). The only place the held-out rule is applied."""
    return task.instances[: task.held_out], task.instances[task.held_out :]


def training_pool(task: SuperNITask, selection: int = 0) -> tuple[tuple[Instance, ...], tuple[Instance, ...]]:
    """(selection instances, instances training may draw from), both with answers and after the held-out set.

    The selection set is the last `selection` answered instances of the pool: fixed by the task file alone (not
    by a seed), so every candidate and every seed is compared on the same instances and none trains on them."""
    _, trainable = split_instances(task)
    answered = tuple(i for i in trainable if i.has_output)  # nothing to learn from (or score against) an empty answer
    if selection > len(answered):
        raise SpecialistError(
            f"task {task.name} has {len(answered)} answered instances after the {task.held_out} held out, "
            f"fewer than the {selection} asked for its selection set",
            "ask for a smaller selection set (selection_instances), or compare a single candidate (no selection set)",
        )
    cut = len(answered) - selection
    return answered[cut:], answered[:cut]


def task_files(task_dir: Path) -> dict[str, Path]:
    """Task name -> file, for every `<name>.json[.gz]` in `task_dir`."""
    task_dir = Path(task_dir)
    if not task_dir.is_dir():
        raise SpecialistError(
            f"task data directory {task_dir} does not exist",
            "pass --task-data pointing at a folder of SuperNI task files (tasks/<task>.json or .json.gz)",
        )
    files: dict[str, Path] = {}
    for path in sorted(task_dir.iterdir()):
        for suffix in TASK_SUFFIXES:
            if path.name.endswith(suffix) and path.is_file():
                files.setdefault(path.name[: -len(suffix)], path)
    if not files:
        raise SpecialistError(f"no SuperNI task files (*.json, *.json.gz) in {task_dir}", "check --task-data")
    return files


def resolve_task_file(task_dir: Path, name: str) -> Path:
    files = task_files(task_dir)
    if name in files:
        return files[name]
    near = difflib.get_close_matches(name, files, n=3, cutoff=0.6)
    # Task names start with 'taskNNN_': let the number alone find the task.
    near += [n for n in files if n.split("_", 1)[0] == name.split("_", 1)[0] and n not in near][:3]
    hint = f"did you mean {', '.join(near)}?" if near else f"see the {len(files)} files in {task_dir}"
    raise SpecialistError(f"unknown task {name!r} in {task_dir}", hint)


def load_task(task_dir: Path, name: str) -> SuperNITask:
    path = resolve_task_file(task_dir, name)
    stat = path.stat()
    return _load_task_file(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _load_task_file(path: Path, _mtime_ns: int, _size: int) -> SuperNITask:
    raw = _read_json(path)
    name = path.name.removesuffix(".gz").removesuffix(".json")
    try:
        definition = raw["Definition"]
        instances = raw["Instances"]
        return SuperNITask(
            name=name,
            path=path,
            sha256=sha256_file(path),
            definition=definition[0] if isinstance(definition, list) else definition,
            positive_examples=tuple(
                Example(input=e["input"], output=e["output"]) for e in raw.get("Positive Examples", [])
            ),
            categories=tuple(raw.get("Categories", [])),
            instances=tuple(Instance(**i) for i in instances),
            held_out=int(raw.get(HELD_OUT_KEY, HELD_OUT_INSTANCES)),
        )
    except (KeyError, TypeError, IndexError, AttributeError, ValueError, ValidationError) as e:
        if isinstance(e, KeyError):
            detail = f"missing key {e}"
        elif isinstance(e, ValidationError):
            err = e.errors()[0]
            detail = f"{'.'.join(map(str, err['loc'])) or 'instance'}: {err['msg']}"
        else:
            detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SpecialistError(
            f"{path} is not a SuperNI task file: {detail}",
            "expected the upstream format with 'Definition', 'Positive Examples' and 'Instances'",
        ) from None


def _read_json(path: Path):
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise SpecialistError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}", "fix or replace the file") from None
    except (RecursionError, ValueError) as e:  # nested too deeply, or an integer with thousands of digits
        raise SpecialistError(
            f"{path}: unreadable JSON ({type(e).__name__}: {str(e)[:80]})", "fix or replace the file"
        ) from None
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise SpecialistError(f"{path}: cannot read: {e}", "fix or replace the file") from None


def read_task_list(path: Path) -> list[str]:
    """A split list: one task name per line (the upstream splits/*/<split>_tasks.txt)."""
    path = Path(path)
    if not path.is_file():
        raise SpecialistError(f"task list {path} does not exist", "pass a file with one task name per line")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    if not names:
        raise SpecialistError(f"task list {path} is empty", "add one task name per line")
    return names


def task_categories(task_dir: Path) -> dict[str, tuple[str, ...]]:
    """Task name -> categories, read from the files and cached by (name, size, mtime)."""
    files = task_files(task_dir)
    cache_path = specialist_home() / "cache" / "superni-categories.json"
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    result, dirty = {}, False
    for name, path in files.items():
        stat = path.stat()
        key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        if key not in cache:
            raw = _read_json(path)
            cache[key] = list(raw.get("Categories", [])) if isinstance(raw, dict) else []
            dirty = True
        result[name] = tuple(cache[key])
    if dirty:
        try:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(cache))
            tmp.replace(cache_path)
        except OSError:
            pass  # the cache is only a speed-up
    return result


def select_tasks(
    task_dir: Path,
    names: list[str] | tuple[str, ...] = (),
    categories: list[str] | tuple[str, ...] = (),
    task_list: Path | None = None,
) -> list[str]:
    """Task names chosen by name, by category and/or by a split list, in a stable order without repeats."""
    chosen: list[str] = []
    for name in names:
        resolve_task_file(task_dir, name)
        chosen.append(name)
    if task_list is not None:
        for name in read_task_list(task_list):
            resolve_task_file(task_dir, name)
            chosen.append(name)
    if categories:
        by_task = task_categories(task_dir)
        known = sorted({c for cats in by_task.values() for c in cats})
        for category in categories:
            matches = [t for t, cats in by_task.items() if category in cats]
            if not matches:
                near = difflib.get_close_matches(category, known, n=3, cutoff=0.5)
                hint = f"did you mean {', '.join(near)}?" if near else "run `specialist tasks categories` to list them"
                raise SpecialistError(f"no task in {task_dir} has category {category!r}", hint)
            chosen.extend(matches)
    if not chosen:
        raise SpecialistError("no task selected", "pass --task NAME, --category NAME or --task-list FILE")
    return list(dict.fromkeys(chosen))
