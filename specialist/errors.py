"""One exception type for every failure a user can cause.

The CLI prints it as a single line (no traceback); the service maps it to a 4xx.
"""


class SpecialistError(Exception):
    """A problem the user can fix. The message names the problem and how to fix it."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} ({fix})" if fix else problem)
