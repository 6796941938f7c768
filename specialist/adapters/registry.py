"""The adapter registry: versioned adapters per task, the routing table, and the promotion history.

Layout under `$SPECIALIST_HOME/registry/`:

    registry.sqlite              versions, routes (task -> champion version), history
    adapters/<task>/v<N>/        an immutable copy of the PEFT dir + manifest + gate decision

Only an adapter whose gate decision passed, for its exact weights and base model, can be routed; operators can
override with `skip_gate`, which is recorded. The tables live in the service's database (specialist.database:
this SQLite file by default, PostgreSQL with SPECIALIST_DATABASE_URL). Every change is one transaction under the
registry's write lock, so promotions are atomic, concurrent promotions (from any replica) serialise, and a
restart reads back exactly the same routes. The registry's version is its newest history entry: every replica
reports the version it serves.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import RowMapping, text

from specialist.adapters.decision import read_decision
from specialist.adapters.manifest import ADAPTER_WEIGHTS, check_adapter
from specialist.database import configured_url, fetch_all, fetch_one, open_database, sqlite_url
from specialist.errors import SpecialistError
from specialist.paths import atomic_dir, sha256_file, share_read, specialist_home, validate_name


@dataclass(frozen=True)
class Version:
    task: str
    version: int
    path: Path
    adapter_sha256: str
    base_model: str
    base_sha256: str
    gate_passed: bool
    skip_gate: bool
    scores: dict
    created_at: str


@dataclass(frozen=True)
class Route:
    task: str
    version: Version


def replay_champions(history: Iterable[tuple[str, int | None]]) -> list[int]:
    """Champions in order, replayed from (action, to_version) history entries: a promotion pushes, a rollback
    pops, a removal clears. The one replay of the history: rollback and the router's fallback both use it."""
    stack: list[int] = []
    for action, to_version in history:
        if action == "promote":
            stack.append(to_version)
        elif action == "rollback" and stack:
            stack.pop()
        elif action == "remove":
            stack.clear()
    return stack


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Registry:
    def __init__(self, home: Path | None = None):
        self.root = Path(home or specialist_home()) / "registry"
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "registry.sqlite"  # the embedded default
        self.db = open_database(configured_url() or sqlite_url(self.db_path), "registry")

    def _connect(self):
        return self.db.read()

    def _transaction(self):
        return self.db.write("registry")

    # -- reading -------------------------------------------------------------------------------------------

    def _version(self, row: RowMapping) -> Version:
        return Version(
            task=row["task"],
            version=row["version"],
            path=Path(row["path"]),
            adapter_sha256=row["adapter_sha256"],
            base_model=row["base_model"],
            base_sha256=row["base_sha256"],
            gate_passed=bool(row["gate_passed"]),
            skip_gate=bool(row["skip_gate"]),
            scores=json.loads(row["scores"]),
            created_at=row["created_at"],
        )

    def versions(self, task: str | None = None) -> list[Version]:
        with self._connect() as db:
            where = "" if task is None else "WHERE task = :task"
            rows = fetch_all(db, f"SELECT * FROM versions {where} ORDER BY task, version", **_only(task=task))
        return [self._version(r) for r in rows]

    def routes(self) -> dict[str, Version]:
        """task -> champion version: what the service serves."""
        return self.snapshot()[1]

    def snapshot(self) -> tuple[int, dict[str, Version]]:
        """(registry version, routes) read together: the version is the newest history entry's id, so it
        changes with every promotion, rollback or removal, and two replicas serving it serve the same routes."""
        with self.db.read(consistent=True) as db:
            version = db.execute(text("SELECT COALESCE(MAX(id), 0) FROM history")).scalar_one()
            rows = fetch_all(
                db,
                "SELECT v.* FROM routes r JOIN versions v ON v.task = r.task AND v.version = r.version ORDER BY r.task",
            )
        return int(version), {r["task"]: self._version(r) for r in rows}

    def history(self, task: str | None = None) -> list[dict]:
        with self._connect() as db:
            where = "" if task is None else "WHERE task = :task"
            rows = fetch_all(db, f"SELECT * FROM history {where} ORDER BY id", **_only(task=task))
        return [dict(r) for r in rows]

    def added_by(self, task: str, actor: str) -> Version | None:
        """The version `actor` registered for `task`, if any: a job resumed after its process died between
        registering and recording it finds its version here instead of registering a second one."""
        with self._connect() as db:
            row = fetch_one(
                db,
                "SELECT to_version FROM history WHERE task = :task AND action = 'add' AND actor = :actor"
                " ORDER BY id DESC LIMIT 1",
                task=task,
                actor=actor,
            )
        return None if row is None else self.version(task, row["to_version"])

    # -- writing -------------------------------------------------------------------------------------------

    def add(
        self, adapter_dir: Path, task: str, *, skip_gate: bool = False, actor: str = "cli", promote: bool = True
    ) -> Version:
        """Copy an adapter into the registry as the task's next version (and route to it, by default)."""
        validate_name(task, "task name")
        adapter_dir = Path(adapter_dir)
        manifest = check_adapter(adapter_dir).require("register a LoRA adapter made by `specialist train`")
        weights_sha = sha256_file(adapter_dir / ADAPTER_WEIGHTS)
        decision = read_decision(adapter_dir)
        passed = bool(decision and decision.passed)
        if not skip_gate:
            if decision is None:
                raise SpecialistError(
                    f"{adapter_dir} has no gate decision",
                    f"run `specialist gate --candidate {adapter_dir}` first (operators: --skip-gate)",
                )
            if not passed:
                failed = ", ".join(c.name for c in decision.failures())
                raise SpecialistError(
                    f"{adapter_dir} failed its gate ({failed})", "train a better adapter (operators: --skip-gate)"
                )
            if decision.adapter_sha256 != weights_sha:
                raise SpecialistError(
                    f"the gate decision in {adapter_dir} is for other weights",
                    "re-run `specialist gate` on this adapter",
                )
            if decision.base_sha256 != manifest.base_model.content_sha256:
                raise SpecialistError(
                    f"the gate decision in {adapter_dir} is for another base model", "re-run `specialist gate`"
                )
        # The decision scores every model it evaluated (candidate, base, champion, majority): keep the candidate's.
        scores = decision.candidate_scores if decision else {}
        with self._transaction() as db:
            version = db.execute(
                text("SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE task = :task"), {"task": task}
            ).scalar_one()
            while (self.root / "adapters" / task / f"v{version}").exists():
                version += 1  # a copy left by a crash between rename and commit: never reuse its number
            dest = self.root / "adapters" / task / f"v{version}"
            with atomic_dir(dest) as tmp:
                for item in adapter_dir.iterdir():
                    if item.is_file() and item.suffix in {".json", ".safetensors", ".jsonl", ".md"}:
                        shutil.copy2(item, tmp / item.name)
                share_read(tmp)
            db.execute(
                text(
                    "INSERT INTO versions (task, version, path, adapter_sha256, base_model, base_sha256, gate_passed,"
                    " skip_gate, scores, created_at) VALUES (:task, :version, :path, :adapter_sha256, :base_model,"
                    " :base_sha256, :gate_passed, :skip_gate, :scores, :created_at)"
                ),
                {
                    "task": task,
                    "version": version,
                    "path": str(dest),
                    "adapter_sha256": weights_sha,
                    "base_model": manifest.base_model.id,
                    "base_sha256": manifest.base_model.content_sha256,
                    "gate_passed": int(passed),
                    "skip_gate": int(skip_gate),
                    "scores": json.dumps(scores),
                    "created_at": _now(),
                },
            )
            reason = "registered" + (" with --skip-gate" if skip_gate else " (gate passed)")
            self._log(db, task, "add", None, version, actor, reason)
            if promote:
                self._route(db, task, version, "promote", actor, reason)
        return self.version(task, version)

    def version(self, task: str, version: int) -> Version:
        with self._connect() as db:
            row = fetch_one(
                db, "SELECT * FROM versions WHERE task = :task AND version = :version", task=task, version=version
            )
        if row is None:
            known = [v.version for v in self.versions(task)]
            raise SpecialistError(f"task {task!r} has no version {version}", f"known versions: {known or 'none'}")
        return self._version(row)

    def promote(self, task: str, version: int, *, actor: str = "cli", reason: str = "promoted") -> Version:
        validate_name(task, "task name")
        with self._transaction() as db:
            row = fetch_one(
                db, "SELECT * FROM versions WHERE task = :task AND version = :version", task=task, version=version
            )
            if row is None:
                raise SpecialistError(f"task {task!r} has no version {version}", "see `specialist registry list`")
            if not row["gate_passed"] and not row["skip_gate"]:
                raise SpecialistError(f"{task} v{version} has no passing gate decision", "it cannot be routed")
            self._route(db, task, version, "promote", actor, reason)
        return self._version(row)

    def rollback(self, task: str, *, actor: str = "cli") -> Version:
        """Route back to the champion before the current one (repeatable: walks back through promotions)."""
        validate_name(task, "task name")
        with self._transaction() as db:
            stack = self._champion_stack(db, task)
            if not stack:
                raise SpecialistError(f"task {task!r} is not routed", "nothing to roll back")
            if len(stack) < 2:
                raise SpecialistError(f"task {task!r} has no earlier champion", "promote a specific version instead")
            previous = stack[-2]
            self._route(db, task, previous, "rollback", actor, f"rollback from v{stack[-1]}")
            row = fetch_one(
                db, "SELECT * FROM versions WHERE task = :task AND version = :version", task=task, version=previous
            )
        return self._version(row)

    @staticmethod
    def _champion_stack(db, task: str) -> list[int]:
        rows = fetch_all(db, "SELECT action, to_version FROM history WHERE task = :task ORDER BY id", task=task)
        return replay_champions((row["action"], row["to_version"]) for row in rows)

    def champions(self, task: str) -> list[int]:
        """The task's champions in promotion order, the current one last (what a rollback walks back through)."""
        with self._connect() as db:
            return self._champion_stack(db, task)

    def remove(self, task: str, *, actor: str = "cli") -> None:
        """Stop routing the task (its versions stay on disk for inspection)."""
        validate_name(task, "task name")
        with self._transaction() as db:
            current = fetch_one(db, "SELECT version FROM routes WHERE task = :task", task=task)
            if current is None:
                raise SpecialistError(f"task {task!r} is not routed", "see `specialist registry list`")
            db.execute(text("DELETE FROM routes WHERE task = :task"), {"task": task})
            self._log(db, task, "remove", current["version"], None, actor, "route removed")

    def _route(self, db, task: str, version: int, action: str, actor: str, reason: str) -> None:
        current = fetch_one(db, "SELECT version FROM routes WHERE task = :task", task=task)
        if action == "promote" and current is not None and current["version"] == version:
            return  # already the champion: nothing changes, nothing to log
        db.execute(
            text(
                "INSERT INTO routes (task, version, updated_at) VALUES (:task, :version, :at) ON CONFLICT (task)"
                " DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at"
            ),
            {"task": task, "version": version, "at": _now()},
        )
        self._log(db, task, action, current["version"] if current else None, version, actor, reason)

    def _log(self, db, task, action, from_version, to_version, actor, reason) -> None:
        db.execute(
            text(
                "INSERT INTO history (task, action, from_version, to_version, actor, reason, at)"
                " VALUES (:task, :action, :from_version, :to_version, :actor, :reason, :at)"
            ),
            {
                "task": task,
                "action": action,
                "from_version": from_version,
                "to_version": to_version,
                "actor": actor,
                "reason": reason,
                "at": _now(),
            },
        )
        self.db.notify(db, task)  # replicas on PostgreSQL hear of it at commit (the others poll)


def _only(**params) -> dict:
    """The parameters that are set (a statement binds only those it names)."""
    return {k: v for k, v in params.items() if v is not None}
