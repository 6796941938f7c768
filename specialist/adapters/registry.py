"""The adapter registry: versioned adapters per task, the routing table, and the promotion history.

Layout under `$SPECIALIST_HOME/registry/`:

    registry.sqlite              versions, routes (task -> champion version), history
    adapters/<task>/v<N>/        an immutable copy of the PEFT dir + manifest + gate decision

Only an adapter whose gate decision passed, for its exact weights and base model, can be routed; operators can
override with `skip_gate`, which is recorded. Every change is one SQLite transaction (BEGIN IMMEDIATE), so
promotions are atomic, concurrent promotions serialise, and a restart reads back exactly the same routes.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from specialist.adapters.decision import read_decision
from specialist.adapters.manifest import ADAPTER_WEIGHTS, check_adapter
from specialist.errors import SpecialistError
from specialist.paths import atomic_dir, sha256_file, share_read, specialist_home, validate_name
from specialist.sqlite import connect, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    task TEXT NOT NULL, version INTEGER NOT NULL, path TEXT NOT NULL, adapter_sha256 TEXT NOT NULL,
    base_model TEXT NOT NULL, base_sha256 TEXT NOT NULL, gate_passed INTEGER NOT NULL, skip_gate INTEGER NOT NULL,
    scores TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (task, version));
CREATE TABLE IF NOT EXISTS routes (task TEXT PRIMARY KEY, version INTEGER NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, task TEXT NOT NULL, action TEXT NOT NULL, from_version INTEGER,
    to_version INTEGER, actor TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL);
"""


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
        self.db_path = self.root / "registry.sqlite"
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self):
        return connect(self.db_path)

    def _transaction(self):
        return transaction(self.db_path)

    # -- reading -------------------------------------------------------------------------------------------

    def _version(self, row: sqlite3.Row) -> Version:
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
            rows = db.execute(
                "SELECT * FROM versions WHERE (? IS NULL OR task = ?) ORDER BY task, version", (task, task)
            ).fetchall()
        return [self._version(r) for r in rows]

    def routes(self) -> dict[str, Version]:
        """task -> champion version: what the service serves."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT v.* FROM routes r JOIN versions v ON v.task = r.task AND v.version = r.version ORDER BY r.task"
            ).fetchall()
        return {r["task"]: self._version(r) for r in rows}

    def history(self, task: str | None = None) -> list[dict]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM history WHERE (? IS NULL OR task = ?) ORDER BY id", (task, task)
            ).fetchall()
        return [dict(r) for r in rows]

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
                "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE task = ?", (task,)
            ).fetchone()[0]
            while (self.root / "adapters" / task / f"v{version}").exists():
                version += 1  # a copy left by a crash between rename and commit: never reuse its number
            dest = self.root / "adapters" / task / f"v{version}"
            with atomic_dir(dest) as tmp:
                for item in adapter_dir.iterdir():
                    if item.is_file() and item.suffix in {".json", ".safetensors", ".jsonl", ".md"}:
                        shutil.copy2(item, tmp / item.name)
                share_read(tmp)
            db.execute(
                "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    task,
                    version,
                    str(dest),
                    weights_sha,
                    manifest.base_model.id,
                    manifest.base_model.content_sha256,
                    int(passed),
                    int(skip_gate),
                    json.dumps(scores),
                    _now(),
                ),
            )
            reason = "registered" + (" with --skip-gate" if skip_gate else " (gate passed)")
            self._log(db, task, "add", None, version, actor, reason)
            if promote:
                self._route(db, task, version, "promote", actor, reason)
        return self.version(task, version)

    def version(self, task: str, version: int) -> Version:
        with self._connect() as db:
            row = db.execute("SELECT * FROM versions WHERE task = ? AND version = ?", (task, version)).fetchone()
        if row is None:
            known = [v.version for v in self.versions(task)]
            raise SpecialistError(f"task {task!r} has no version {version}", f"known versions: {known or 'none'}")
        return self._version(row)

    def promote(self, task: str, version: int, *, actor: str = "cli", reason: str = "promoted") -> Version:
        validate_name(task, "task name")
        with self._transaction() as db:
            row = db.execute("SELECT * FROM versions WHERE task = ? AND version = ?", (task, version)).fetchone()
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
            row = db.execute("SELECT * FROM versions WHERE task = ? AND version = ?", (task, previous)).fetchone()
        return self._version(row)

    @staticmethod
    def _champion_stack(db, task: str) -> list[int]:
        rows = db.execute("SELECT action, to_version FROM history WHERE task = ? ORDER BY id", (task,))
        return replay_champions((row["action"], row["to_version"]) for row in rows)

    def champions(self, task: str) -> list[int]:
        """The task's champions in promotion order, the current one last (what a rollback walks back through)."""
        with self._connect() as db:
            return self._champion_stack(db, task)

    def remove(self, task: str, *, actor: str = "cli") -> None:
        """Stop routing the task (its versions stay on disk for inspection)."""
        validate_name(task, "task name")
        with self._transaction() as db:
            current = db.execute("SELECT version FROM routes WHERE task = ?", (task,)).fetchone()
            if current is None:
                raise SpecialistError(f"task {task!r} is not routed", "see `specialist registry list`")
            db.execute("DELETE FROM routes WHERE task = ?", (task,))
            self._log(db, task, "remove", current["version"], None, actor, "route removed")

    def _route(self, db, task: str, version: int, action: str, actor: str, reason: str) -> None:
        current = db.execute("SELECT version FROM routes WHERE task = ?", (task,)).fetchone()
        if action == "promote" and current is not None and current["version"] == version:
            return  # already the champion: nothing changes, nothing to log
        db.execute(
            "INSERT INTO routes VALUES (?, ?, ?) ON CONFLICT(task) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
            (task, version, _now()),
        )
        self._log(db, task, action, current["version"] if current else None, version, actor, reason)

    @staticmethod
    def _log(db, task, action, from_version, to_version, actor, reason) -> None:
        db.execute(
            "INSERT INTO history (task, action, from_version, to_version, actor, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (task, action, from_version, to_version, actor, reason, _now()),
        )
