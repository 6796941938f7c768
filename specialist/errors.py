"""One exception type for every failure a user can cause.

The CLI prints it as a single line (no traceback); the service maps it to a 4xx.
"""


class SpecialistError(Exception):
    """A problem the user can fix. The message names the problem and how to fix it."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} ({fix})" if fix else problem)


class UsageError(SpecialistError):
    """The command line, or the config file given with it, is wrong: the CLI exits 2 (a failed check or
    operation exits 1), so scripts can tell a typo from a result."""


def error_line(error: BaseException, limit: int = 200) -> str:
    """One line saying why `error` happened: a SpecialistError's problem, else the first line of its message,
    else its type's name (a bare TimeoutError() has no message)."""
    if isinstance(error, SpecialistError):
        return error.problem
    return (str(error).splitlines() or [type(error).__name__])[0][:limit]
