"""Where things live on disk, names that become paths, and atomic directory writes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from specialist.errors import SpecialistError

HOME_ENV = "SPECIALIST_HOME"
MODELS_ENV = "SPECIALIST_MODELS_DIR"

# Letters, digits, '.', '_' and '-'; must start with a letter or digit. No separators, no '..', no NUL:
# such a name is safe as a directory name, a URL segment and a SQL value.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def specialist_home() -> Path:
    """Registry, jobs and run state. `$SPECIALIST_HOME`, default `~/.specialist`."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".specialist").expanduser()


def models_cache_dir() -> Path:
    """Converted base models. `$SPECIALIST_MODELS_DIR`, default `$XDG_CACHE_HOME/specialist/models`."""
    if os.environ.get(MODELS_ENV):
        return Path(os.environ[MODELS_ENV]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return cache / "specialist" / "models"


# The shared data sits beside the checkout (../shared/data); other machines set these variables or flags.
_REPO_ROOT = Path(__file__).resolve().parent.parent
TASK_DATA_ENV = "SPECIALIST_TASK_DATA"
GENERALIST_DATA_ENV = "SPECIALIST_GENERALIST_DATA"


def default_task_data() -> Path:
    """SuperNI task folder: `$SPECIALIST_TASK_DATA`, else ../shared/data/superni/tasks beside the checkout."""
    return Path(os.environ.get(TASK_DATA_ENV) or _REPO_ROOT.parent / "shared/data/superni/tasks")


def default_generalist_data() -> Path:
    """Generalist records: `$SPECIALIST_GENERALIST_DATA`, else ../shared/data/generalist/alpaca_cleaned.jsonl.gz."""
    return Path(
        os.environ.get(GENERALIST_DATA_ENV) or _REPO_ROOT.parent / "shared/data/generalist/alpaca_cleaned.jsonl.gz"
    )


def validate_name(name: str, what: str = "name") -> str:
    """Return `name` if it is safe to use as a path segment, else raise a one-line error."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise SpecialistError(
            f"invalid {what} {name!r}",
            "use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit, without '..'",
        )
    return name


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temp dir beside `final`; rename it to `final` only if the block succeeds.

    A crash or error leaves no directory at `final`, so a half-written artifact never looks finished.
    """
    final = Path(final)
    if final.exists():
        raise SpecialistError(f"{final} already exists", "choose another path or delete it")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def share_read(folder: Path) -> None:
    """Make an artifact readable by every user (folders 0755, files 0644): a container that serves it runs as
    another, unprivileged user, whatever the umask of the process that wrote it."""
    folder = Path(folder)
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
