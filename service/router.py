"""Routes: which adapter version serves each task, kept in step with the registry (the source of truth).

`sync()` reads the registry's routing table; for every task whose champion changed it loads the new version
first and only then switches the route, so requests never see a half-loaded adapter. A version that fails to
load (corrupt, non-LoRA, other base model) is refused with its reason and the previous champion keeps serving.
The old version is unloaded once its in-flight requests have finished.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from specialist.adapters import Registry, read_manifest
from specialist.errors import SpecialistError, error_line
from specialist.prompt_format import TaskPrompt

log = logging.getLogger("specialist.service")


@dataclass(frozen=True)
class ServedTask:
    task: str
    version: int
    engine_name: str  # the adapter's name inside the engine (peft needs identifier-like names)
    path: Path
    prompt: TaskPrompt
    base_model: str
    scores: dict


class UnknownTask(SpecialistError):
    def __init__(self, task: str, served: list[str]):
        self.task, self.served = task, served
        super().__init__(f"unknown task {task!r}", f"served tasks: {', '.join(served) or 'none'}")


def task_prompt(path: Path, task: str) -> TaskPrompt:
    """The prompt an adapter was trained with for `task` (its only task when it was trained on one)."""
    manifest = read_manifest(path)
    if task in manifest.tasks:
        return manifest.tasks[task]
    return next(iter(manifest.tasks.values()))


class Router:
    def __init__(
        self,
        registry: Registry,
        load,
        unload,
        permanent=lambda error: isinstance(error, SpecialistError),
        capacity: int | None = None,
    ):
        """`load(name, path)` must block until the adapter is usable (or raise); `unload(name)` may defer;
        `permanent(error)` says whether a load failure means the adapter itself is bad; `capacity`: the most
        tasks the backend serves at once (a task beyond it is refused with the reason, until one is removed)."""
        self.registry = registry
        self.capacity = capacity
        self._over_capacity: set[str] = set()
        self._load, self._unload, self.permanent = load, unload, permanent
        self.routes: dict[str, ServedTask] = {}
        self.errors: dict[str, str] = {}  # task -> why its newest champion is not served
        self._lock = threading.Lock()
        self._names = 0
        self._wanted: dict[str, int] | None = None  # task -> champion version, as the last sync read the registry
        self.registry_version = 0  # the registry's version the routes follow (its newest history entry)

    def resolve(self, task: str) -> ServedTask:
        served = self.routes.get(task)  # one dict read: a concurrent swap replaces the dict, never mutates it
        if served is None:
            raise UnknownTask(task, sorted(self.routes))
        return served

    def sync(self) -> list[str]:
        """Bring the served routes in line with the registry; returns the tasks whose route changed."""
        with self._lock:  # one sync at a time (poller thread and admin endpoint)
            registry_version, wanted = self.registry.snapshot()
            self._wanted = {task: version.version for task, version in wanted.items()}
            routes = dict(self.routes)
            changed: list[str] = []
            retired: list[str] = []
            pending = False  # a champion not loaded yet (a busy engine): the routes do not follow the registry yet
            for task, version in wanted.items():
                current = routes.get(task)
                if current is not None and current.version == version.version and current.path == version.path:
                    self.errors.pop(task, None)  # e.g. rolled back to the version served in place of a refused one
                    continue
                served = sum(t in wanted for t in routes)  # a task removed from the registry frees its room
                if current is None and self.capacity is not None and served >= self.capacity:
                    self.errors[task] = (
                        f"v{version.version}: the backend serves at most {self.capacity} tasks at once and "
                        f"{served} are routed (remove one, or raise the engine's limit: --vllm-max-cpu-loras)"
                    )
                    self._over_capacity.add(task)  # looked at again every sync: room may free up
                    continue
                if task not in self._over_capacity and self.errors.get(task, "").startswith(f"v{version.version}:"):
                    continue  # this version was refused for good; keep serving the previous one
                if task in self._over_capacity:  # there is room now: its capacity refusal no longer holds
                    self._over_capacity.discard(task)
                    self.errors.pop(task, None)
                self._names += 1
                name = f"adapter{self._names}_v{version.version}"
                try:
                    prompt = task_prompt(version.path, task)
                    self._load(name, version.path)
                except Exception as e:  # noqa: BLE001 - a bad adapter must not take the service down
                    log.error("not serving %s v%s: %s", task, version.version, error_line(e))
                    self._unload(name)
                    pending = pending or not self.permanent(e)
                    if self.permanent(e):  # a broken adapter stays refused; a busy engine is retried next sync
                        self.errors[task] = f"v{version.version}: {error_line(e)}"
                        if current is None:  # nothing served for it yet (e.g. just restarted): fall back
                            fallback = self._load_previous_champion(task, version.version)
                            if fallback is not None:
                                routes[task] = fallback
                                changed.append(task)
                    continue
                routes[task] = ServedTask(
                    task, version.version, name, version.path, prompt, version.base_model, version.scores
                )
                self.errors.pop(task, None)
                changed.append(task)
                if current is not None:
                    retired.append(current.engine_name)
            for task in [t for t in routes if t not in wanted]:
                retired.append(routes.pop(task).engine_name)
                changed.append(task)
            self.routes = routes  # the atomic switch: new requests now resolve to the new versions...
            if not pending:
                self.registry_version = registry_version
            for name in retired:  # ...and only then are the old ones unloaded (after their queued requests)
                self._unload(name)
            return changed

    def _previous_champions(self, task: str) -> list[int]:
        """The task's earlier champions, newest first, as the registry replays its history for a rollback."""
        return list(dict.fromkeys(reversed(self.registry.champions(task)[:-1])))

    def _load_previous_champion(self, task: str, refused: int) -> ServedTask | None:
        """The newest earlier champion that loads, served in place of a refused one. Without this, a restart
        after a bad promotion (say, a corrupt adapter pushed with --skip-gate) served the task not at all."""
        for number in self._previous_champions(task):
            if number == refused:
                continue
            version = self.registry.version(task, number)
            self._names += 1
            name = f"adapter{self._names}_v{number}"
            try:
                prompt = task_prompt(version.path, task)
                self._load(name, version.path)
            except Exception as e:  # noqa: BLE001 - try the one before
                log.error("previous champion %s v%s does not load either: %s", task, number, error_line(e))
                self._unload(name)
                continue
            log.warning("serving %s v%s in place of the refused v%s", task, number, refused)
            return ServedTask(task, number, name, version.path, prompt, version.base_model, version.scores)
        return None

    def ready(self) -> bool:
        """Every routed task has been dealt with: loaded, or refused with a reason (then its previous champion,
        if any, keeps serving). A bad adapter must not make the whole service unready.

        Judged against the registry as the last sync read it (the poller reads it every poll_seconds): a probe
        never waits on the registry's disk, so a registry that cannot be read for a while (read-only, full,
        locked) does not make a service that keeps serving look down (it made /readyz hang 30 s and fail)."""
        wanted = self._wanted
        if wanted is None:
            return False
        return all(
            (t in self.routes and self.routes[t].version == v) or self.errors.get(t, "").startswith(f"v{v}:")
            for t, v in wanted.items()
        )
