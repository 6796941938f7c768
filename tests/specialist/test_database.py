"""The database layer: URLs, migrations of a home made before them, PostgreSQL's notifications and errors."""

import sqlite3
import threading
import time

import pytest

from specialist.adapters import Registry
from specialist.database import Database, open_database, sqlite_url, storage_error_line
from specialist.errors import SpecialistError

# The registry's tables as round 1 created them (before migrations): a home like this must upgrade in place.
ROUND_1_REGISTRY = """
CREATE TABLE versions (
    task TEXT NOT NULL, version INTEGER NOT NULL, path TEXT NOT NULL, adapter_sha256 TEXT NOT NULL,
    base_model TEXT NOT NULL, base_sha256 TEXT NOT NULL, gate_passed INTEGER NOT NULL, skip_gate INTEGER NOT NULL,
    scores TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (task, version));
CREATE TABLE routes (task TEXT PRIMARY KEY, version INTEGER NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, task TEXT NOT NULL, action TEXT NOT NULL, from_version INTEGER,
    to_version INTEGER, actor TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL);
INSERT INTO versions VALUES ('t', 1, '/x/v1', 'abc', 'base', 'def', 1, 0, '{"exact_match": 50.0}', 't0');
INSERT INTO routes VALUES ('t', 1, 't0');
INSERT INTO history (task, action, from_version, to_version, actor, reason, at)
    VALUES ('t', 'add', NULL, 1, 'cli', 'registered', 't0'), ('t', 'promote', NULL, 1, 'cli', 'registered', 't0');
"""


def test_a_registry_from_before_migrations_upgrades_in_place(tmp_path, monkeypatch):
    monkeypatch.delenv("SPECIALIST_DATABASE_URL", raising=False)
    (tmp_path / "registry").mkdir()
    old = sqlite3.connect(tmp_path / "registry" / "registry.sqlite")
    old.executescript(ROUND_1_REGISTRY)
    old.close()
    registry = Registry(tmp_path)
    version, routes = registry.snapshot()
    assert version == 2 and routes["t"].version == 1 and routes["t"].scores == {"exact_match": 50.0}
    assert registry.champions("t") == [1]
    with sqlite3.connect(tmp_path / "registry" / "registry.sqlite") as db:
        assert db.execute("SELECT version_num FROM alembic_version_registry").fetchall() == [("registry_0001",)]


def test_database_urls_are_checked_in_one_line():
    with pytest.raises(SpecialistError, match="is not a database URL"):
        Database("no such thing")
    with pytest.raises(SpecialistError, match="mysql databases are not supported"):
        Database("mysql://u@h/db")
    assert Database("postgresql://u:secret@h/db").describe() == "postgresql+psycopg://u:***@h/db"


def test_a_database_that_is_down_is_one_line_naming_it():
    db = Database("postgresql://127.0.0.1:1/none")  # nothing listens on port 1
    with pytest.raises(Exception) as caught:
        with db.read() as conn:
            conn.exec_driver_sql("SELECT 1")
    line = storage_error_line(caught.value)
    assert "127.0.0.1" in line and "\n" not in line and "sqlalche.me" not in line


def test_postgres_announces_registry_changes_to_listeners(postgres_url, tmp_path, monkeypatch):
    monkeypatch.setenv("SPECIALIST_DATABASE_URL", postgres_url)
    db = open_database(postgres_url, "registry")
    heard, stop = threading.Event(), threading.Event()
    calls = []
    db.listen(lambda: (calls.append(time.monotonic()), heard.set()), stop)
    try:
        assert heard.wait(5)  # the first call: whatever changed before it listened
        heard.clear()
        time.sleep(0.2)
        with db.write("registry") as conn:
            db.notify(conn, "t")
        assert heard.wait(2), "a committed change reaches a listener within 2 s"
    finally:
        stop.set()


def test_sqlite_urls_are_absolute(tmp_path):
    assert sqlite_url(tmp_path / "x.sqlite") == f"sqlite:///{tmp_path.resolve()}/x.sqlite"
