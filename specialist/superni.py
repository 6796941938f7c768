"""Task sources: Super-NaturalInstructions folders (upstream JSON, optionally gzipped) and inline task files.

`load_task(source, name)` and `select_tasks(source, ...)` are how every stage reads task data. A source is
a folder of SuperNI task files, or an inline task file (`specialist.tasks.InlineTask`, one task with its
evaluation set listed apart). Both give a `specialist.tasks.Task`.

The SuperNI held-out rule lives here and only here: the first `HELD_OUT_INSTANCES` instances of every
SuperNI task are its evaluation set and are never trained on (`_split`, applied when the file is read).
"""

from __future__ import annotations

import difflib
import functools
import gzip
import json
from pathlib import Path

from pydantic import ValidationError

from specialist.errors import SpecialistError
from specialist.paths import sha256_file, specialist_home
from specialist.prompt_format import Example
from specialist.tasks import Instance, Task, read_inline_task

HELD_OUT_INSTANCES = 100
TASK_SUFFIXES = (".json.gz", ".json")


def _split(instances: tuple[Instance, ...]) -> tuple[tuple[Instance, ...], tuple[Instance, ...]]:
    """(held-out evaluation instances, trainable instances) of a SuperNI task. The only place the rule is applied."""
    return instances[:HELD_OUT_INSTANCES], instances[HELD_OUT_INSTANCES:]


def task_files(task_dir: Path) -> dict[str, Path]:
    """Task name -> file, for every `<name>.json[.gz]` in `task_dir`."""
    task_dir = Path(task_dir)
    if task_dir.is_file():  # an inline task file holds one task
        return {_load_inline(task_dir).name: task_dir}
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
    if Path(task_dir).is_file():
        hint = f"the inline task file {task_dir} holds one task: {next(iter(files))}"
    else:
        hint = f"did you mean {', '.join(near)}?" if near else f"see the {len(files)} files in {task_dir}"
    raise SpecialistError(f"unknown task {name!r} in {task_dir}", hint)


def load_task(source: Path, name: str) -> Task:
    """Task `name` from a source: a folder of SuperNI task files, or an inline task file."""
    path = resolve_task_file(source, name)
    if Path(source).is_file():
        return _load_inline(path)
    stat = path.stat()
    return _load_task_file(path, stat.st_mtime_ns, stat.st_size)


def _load_inline(path: Path) -> Task:
    stat = path.stat()
    return _cached_inline(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _cached_inline(path: Path, _mtime_ns: int, _size: int) -> Task:
    return read_inline_task(path)


@functools.lru_cache(maxsize=64)
def _load_task_file(path: Path, _mtime_ns: int, _size: int) -> Task:
    raw = _read_json(path)
    name = path.name.removesuffix(".gz").removesuffix(".json")
    try:
        definition = raw["Definition"]
        instances = raw["Instances"]
        evaluation, trainable = _split(tuple(Instance(**i) for i in instances))
        return Task(
            name=name,
            path=path,
            sha256=sha256_file(path),
            definition=definition[0] if isinstance(definition, list) else definition,
            positive_examples=tuple(
                Example(input=e["input"], output=e["output"]) for e in raw.get("Positive Examples", [])
            ),
            categories=tuple(raw.get("Categories", [])),
            evaluation=evaluation,
            trainable=trainable,
            licenses=_licenses(raw.get("Instance License")),
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


def _licenses(value) -> tuple[str, ...]:
    """A task file's 'Instance License' (a list upstream; a string is accepted; anything else: none stated)."""
    items = value if isinstance(value, list) else [value]
    return tuple(str(v) for v in items if isinstance(v, str) and v.strip())


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
    if Path(task_dir).is_file():
        return {name: _load_inline(path).categories for name, path in files.items()}
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
