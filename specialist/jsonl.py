"""Reading JSON Lines: the one loop every loader uses (generalist data, benchmarks, prediction files, uploads).

Blank lines are skipped; a line that is not JSON is an error naming the file and the line, never a traceback.
`.gz` files are read transparently.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

from specialist.errors import SpecialistError


def parse_line(line: str, where: str) -> object:
    """One JSON value; `where` names it in the error ("file.jsonl, line 3")."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise SpecialistError(f"{where}: malformed JSON ({e.msg})", "fix or remove that line") from None
    except (RecursionError, ValueError) as e:  # nested too deeply, or an integer too long to parse
        raise SpecialistError(f"{where}: unreadable JSON ({str(e)[:80]})", "fix or remove that line") from None


def read_text(path: Path) -> str:
    """The whole file as text (`.gz` read transparently); unreadable files are one-line errors."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return f.read()
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise SpecialistError(f"{path}: cannot read: {e}", "fix or replace the file") from None


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of the non-blank lines; unreadable files (bad gzip, not UTF-8) are one-line errors."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    yield lineno, line
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise SpecialistError(f"{path}: cannot read: {e}", "fix or replace the file") from None


def read_jsonl(path: Path) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) for every non-blank line."""
    for lineno, line in iter_lines(path):
        yield lineno, parse_line(line, f"{path}, line {lineno}")
