"""One in-process service for the reliability tests: the tiny model, two routed adapters, an admin token.

Package-scoped (built once for all reliability tests); tests that change routes build their own. The job
worker is stopped: fuzzed requests may queue jobs, none may train. With $RELIABILITY_RECORD set (by
`python -m reliability`), every bad-input case appends {id, status} to that file so the report can count them.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import pytest

from tests.specialist.test_registry import _gated

TOKEN = "reliability-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
TASK = "sentiment"
OTHER_TASK = "sentiment-mixed"
CAP = 8  # max_new_tokens cap of the test service: keeps fuzzed generations short

_record_lock = threading.Lock()


def record(kind: str, case_id: str, status: int | None, problem: str | None = None) -> None:
    """Append one bad-input case to $RELIABILITY_RECORD (no-op in CI). `status` is the HTTP answer, None for a
    case that sent no request (a bad file handed to a loader)."""
    path = os.environ.get("RELIABILITY_RECORD")
    if not path:
        return
    line = json.dumps({"kind": kind, "id": case_id, "status": status, "problem": problem}, ensure_ascii=True)
    with _record_lock, open(path, "a") as f:
        f.write(line + "\n")


def make_home(root: Path, tiny_adapters) -> Path:
    from specialist.adapters import Registry

    home = root / "home"
    registry = Registry(home)
    registry.add(_gated(tiny_adapters["alpha"], root / "alpha"), TASK)
    registry.add(_gated(tiny_adapters["beta"], root / "beta"), OTHER_TASK)
    return home


def make_state(
    home: Path, tiny_model_dir: Path, task_dir: Path | None = None, generalist: Path | None = None, **overrides
):
    from service.app import ServiceState
    from service.config import ServeConfig

    extra = {"task_data": task_dir} if task_dir else {}
    if generalist:
        extra["generalist_data"] = str(generalist)
    settings = (
        {
            "base_model": str(tiny_model_dir),
            "max_wait_ms": 5,
            "poll_seconds": 0.2,
            "max_new_tokens_cap": CAP,
            "default_max_new_tokens": 4,
        }
        | extra
        | overrides
    )
    config = ServeConfig(**settings)
    return ServiceState(config, home=home)


@pytest.fixture(scope="package", autouse=True)
def _hypothesis_home(tmp_path_factory):
    """Hypothesis keeps a cache folder: in a temp dir, not in the checkout."""
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(str(tmp_path_factory.mktemp("hypothesis")))


@pytest.fixture(scope="package")
def admin_env():
    mp = pytest.MonkeyPatch()
    mp.setenv("SPECIALIST_ADMIN_TOKEN", TOKEN)
    yield TOKEN
    mp.undo()


@pytest.fixture(scope="package")
def rel_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reliability")


@pytest.fixture(scope="package")
def rel_service(admin_env, rel_root, tiny_model_dir, tiny_adapters, task_dir, generalist_file):
    """(TestClient, ServiceState) over a home with two routed tiny adapters; jobs are accepted but never run."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    home = make_home(rel_root, tiny_adapters)
    state = make_state(home, tiny_model_dir, task_dir, generalist_file)
    state.worker.close()  # queued jobs stay queued: bad input must be judged, not trained on
    app = create_app(state)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.state, client.app_ = state, app
        yield client
    state.close()


# -- watching the file system: no request may touch a path outside the configured homes ----------------------

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_WRITE_EVENTS = {
    "os.mkdir",
    "os.rename",
    "os.remove",
    "os.rmdir",
    "shutil.rmtree",
    "os.truncate",
    "os.chmod",
    "os.symlink",
    "os.link",
}


class FileWatch:
    """Records every path the service opens, creates, renames or removes (Python audit events) while active.

    Only threads other than the main one are watched: the app runs in the test client's event-loop thread and
    its worker threads, while the main thread is the test itself (and hypothesis, which keeps a cache)."""

    def __init__(self):
        self.active = False
        self.events: list[tuple[str, str, bool]] = []  # (event, path, is_write)
        sys.addaudithook(self._hook)  # audit hooks cannot be removed: this one is cheap while inactive

    def _hook(self, event: str, args) -> None:
        if not self.active or threading.current_thread() is threading.main_thread():
            return
        if event == "open":
            path, mode, flags = args
            write = bool(mode and any(m in mode for m in "wax+")) or bool(flags and flags & _WRITE_FLAGS)
            self._add(event, path, write)
        elif event in _WRITE_EVENTS:
            for path in args[:2] if event in ("os.rename", "os.symlink", "os.link") else args[:1]:
                self._add(event, path, True)
        elif event in ("sqlite3.connect", "os.listdir", "os.scandir", "shutil.copyfile"):
            for i, path in enumerate(args[:2] if event == "shutil.copyfile" else args[:1]):
                self._add(event, path, event == "shutil.copyfile" and i == 1)

    def _add(self, event: str, path, write: bool) -> None:
        if isinstance(path, int) or path is None:
            return  # an already-open descriptor
        path = os.fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else str(path)
        self.events.append((event, path, write))

    def outside(self, read_roots: list[Path], write_roots: list[Path]) -> list[str]:
        """Events whose path resolves outside the allowed roots (writes: only `write_roots`)."""
        bad = []
        for event, path, write in self.events:
            if path in (":memory:", ""):
                continue
            try:
                resolved = Path(os.path.abspath(path)).resolve()
            except (OSError, ValueError):
                bad.append(f"{event} {path!r} (unresolvable)")
                continue
            roots = write_roots if write else read_roots
            if not any(resolved == r or r in resolved.parents for r in roots):
                bad.append(f"{event} {'write' if write else 'read'} {path!r}")
        return bad


_WATCH: FileWatch | None = None


@pytest.fixture(scope="package")
def file_watch() -> FileWatch:
    global _WATCH
    if _WATCH is None:
        _WATCH = FileWatch()
    _WATCH.events.clear()
    return _WATCH


def allowed_roots(state, extra: list[Path] = ()) -> tuple[list[Path], list[Path]]:
    """(read roots, write roots) for a service: its homes, plus the code it runs and the system's own files."""
    import sysconfig

    home = state.jobs.root.parent.resolve()
    homes = [
        home,
        Path(state.base.path).resolve() if hasattr(state.base, "path") else None,
        Path(state.config.task_data).resolve(),
        Path(state.config.generalist_data).resolve(),
    ]
    code = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), Path(__file__).resolve().parents[2]}
    code |= {Path(p).resolve() for p in sysconfig.get_paths().values()}
    system = [Path("/dev"), Path("/proc"), Path("/sys"), Path("/etc/localtime"), Path("/usr/share/zoneinfo")]
    reads = [p for p in homes if p is not None] + sorted(code) + system + [Path(p).resolve() for p in extra]
    return reads, [home, Path("/dev/null")]
