"""The database the registry and the job table live in: SQLite under $SPECIALIST_HOME by default (embedded,
nothing to run), PostgreSQL when SPECIALIST_DATABASE_URL=postgresql://... is set (several replicas, one truth).

SQLAlchemy Core 2 over both; each store's schema is versioned by its own Alembic migrations
(specialist/migrations/<store>/), applied at open: an existing SQLite home from an earlier version upgrades in
place. Writers that check and then act (a promotion, a job claim) take the store's write lock: BEGIN IMMEDIATE
on SQLite, a transaction-scoped advisory lock on PostgreSQL, so concurrent writers serialise on both.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, RowMapping, bindparam, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import NullPool

from specialist.errors import SpecialistError

log = logging.getLogger("specialist.database")
DATABASE_URL_ENV = "SPECIALIST_DATABASE_URL"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# What storage that cannot be read or written raises: the service answers 503 with the cause, the CLI one line.
# (Not every SQLAlchemyError: a bug in a statement must not pass for a database that is down.)
STORAGE_ERRORS = (sqlite3.Error, DBAPIError, PoolTimeout, OSError)
NOTIFY_CHANNEL = "specialist_registry"  # PostgreSQL: a registry change is announced here (replicas LISTEN)


def storage_error_line(error: BaseException) -> str:
    """The driver's own first line (SQLAlchemy's wrapper adds the statement and a link)."""
    cause = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0][:300]


def storage_fix() -> str:
    """What to check when storage fails: the database the service is configured with, or the home's disk."""
    if configured_url():
        return f"check that the database in ${DATABASE_URL_ENV} is up and reachable"
    return "check free space and permissions of $SPECIALIST_HOME"


def configured_url() -> str | None:
    """SPECIALIST_DATABASE_URL, or None for the embedded SQLite default."""
    return os.environ.get(DATABASE_URL_ENV) or None


class Database:
    """One database URL: an engine, transactions for readers and for writers, and migrations."""

    def __init__(self, url: str):
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise SpecialistError(
                f"{DATABASE_URL_ENV}={url!r} is not a database URL", "use postgresql://user@host:5432/dbname"
            ) from None
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3, the maintained driver
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise SpecialistError(
                f"{DATABASE_URL_ENV}: {parsed.drivername} databases are not supported",
                "use postgresql://... (or unset it for the embedded SQLite)",
            )
        self.url = parsed
        if self.dialect == "sqlite":
            # NullPool: a connection per use, as before SQLAlchemy: no file handles held per home, no stale ones.
            self.engine = create_engine(
                parsed, connect_args={"timeout": 30, "check_same_thread": False}, poolclass=NullPool
            )
            _sqlite_transactions(self.engine)
        else:
            # pre_ping: a connection the server dropped (restart) is replaced, not handed out
            self.engine = create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=5, pool_timeout=10)
        self._migrated: set[str] = set()

    @property
    def postgres(self) -> bool:
        return self.dialect == "postgresql"

    def describe(self) -> str:
        """The URL without its password, for logs and status pages."""
        return self.url.render_as_string(hide_password=True)

    @contextmanager
    def read(self, consistent: bool = False) -> Iterator[Connection]:
        """A read-only transaction; `consistent`: its statements see one snapshot (SQLite's always do)."""
        with self.engine.connect() as conn:
            if consistent and self.postgres:
                conn.execution_options(isolation_level="REPEATABLE READ")
            yield conn

    @contextmanager
    def write(self, lock: str) -> Iterator[Connection]:
        """A transaction holding `lock` (one per store) until it commits or rolls back."""
        with self.engine.connect().execution_options(write_lock=True) as conn, conn.begin():
            if self.postgres:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(lock)})
            yield conn

    def notify(self, conn: Connection, payload: str) -> None:
        """Announce a change to listening replicas when `conn`'s transaction commits (PostgreSQL only)."""
        if self.postgres:
            conn.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": NOTIFY_CHANNEL, "payload": payload})

    def listen(self, on_change, stop: threading.Event) -> threading.Thread | None:
        """PostgreSQL: call `on_change()` whenever a registry change commits (LISTEN), from a thread that
        reconnects after a lost connection until `stop` is set. None on SQLite (replicas poll)."""
        if not self.postgres:
            return None
        import psycopg

        # The dialect's own translation of the URL into libpq arguments (quoting included).
        cargs, cparams = self.engine.dialect.create_connect_args(self.engine.url)
        cparams.update(autocommit=True, connect_timeout=5, keepalives=1, keepalives_idle=30)

        def run() -> None:
            delay = 0.5
            while not stop.is_set():
                try:
                    with psycopg.connect(*cargs, **cparams) as conn:
                        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                        delay = 0.5
                        on_change()  # whatever changed while not listening
                        while not stop.is_set():
                            for _ in conn.notifies(timeout=1.0, stop_after=1):
                                on_change()
                except psycopg.Error as e:
                    log.warning("registry LISTEN connection lost (%s); polling until it is back", storage_error_line(e))
                    stop.wait(delay)
                    delay = min(delay * 2, 10.0)

        thread = threading.Thread(target=run, name="registry-listen", daemon=True)
        thread.start()
        return thread

    def migrate(self, store: str) -> None:
        """Bring `store`'s tables to the newest schema (once per process and store)."""
        with _migration_lock:  # Alembic's context is process-wide: one migration at a time
            if store in self._migrated:
                return
            from alembic import command
            from alembic.config import Config
            from alembic.runtime.migration import MigrationContext
            from alembic.script import ScriptDirectory

            config = Config()
            config.set_main_option("path_separator", "os")  # paths with spaces or commas stay one path
            config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
            config.set_main_option("version_locations", str(MIGRATIONS / store).replace("%", "%%"))
            version_table = config.attributes["version_table"] = f"alembic_version_{store}"
            head = ScriptDirectory.from_config(config).get_current_head()
            with self.read() as conn:  # at head already (the usual start): no write, so a read-only home opens
                current = MigrationContext.configure(conn, opts={"version_table": version_table}).get_current_revision()
            if current != head:
                with self.write(f"migrate-{store}") as conn:  # replicas starting together migrate one at a time
                    config.attributes["connection"] = conn
                    command.upgrade(config, "head")
            self._migrated.add(store)


def fetch_all(db: Connection, sql: str, expanding: tuple[str, ...] = (), **params) -> list[RowMapping]:
    """The rows of one statement as mappings; `expanding`: parameters that are tuples, bound as IN (...) lists."""
    statement = text(sql).bindparams(*(bindparam(name, expanding=True) for name in expanding))
    return list(db.execute(statement, params).mappings())


def fetch_one(db: Connection, sql: str, expanding: tuple[str, ...] = (), **params) -> RowMapping | None:
    found = fetch_all(db, sql, expanding, **params)
    return found[0] if found else None


def _lock_key(name: str) -> int:
    return zlib.crc32(name.encode())  # stable across processes (hash() is salted per process)


def _sqlite_transactions(engine: Engine) -> None:
    """pysqlite's own transaction handling is off; we emit BEGIN ourselves: IMMEDIATE for writers, so they take
    the write lock at once and wait for each other instead of failing on upgrade. WAL: readers never block."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA busy_timeout=30000")

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write_lock") else "BEGIN")


_migration_lock = threading.Lock()
_databases: dict[str, Database] = {}
_databases_lock = threading.Lock()


def open_database(url: str, store: str) -> Database:
    """The process's one Database for `url`, with `store`'s schema migrated to the newest version."""
    with _databases_lock:
        database = _databases.get(url)
        if database is None:
            database = _databases[url] = Database(url)
    database.migrate(store)
    return database


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"
