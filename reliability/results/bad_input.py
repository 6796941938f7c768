"""Results of the bad-input scenarios: the quick part under pytest, bad input and security against the live
server. Their goals combine the parts, so they are judged in `reliability.results.combined`."""

from __future__ import annotations

from reliability.results.base import Result

SECURITY_TEST_FILES = ("test_security", "test_bad_files")  # the quick tests that the security goal counts


class QuickResult(Result):
    """tests/reliability under pytest, every bad-input case recorded."""

    pytest_exit_code: int
    pytest_summary: str
    tests: int | None  # None: no JUnit report (pytest did not get that far)
    failures: int | None
    seconds: float
    distinct_cases: int
    cases_by_kind: dict[str, int]
    requests_sent: int
    server_errors: int
    problems: list[str]
    crashed_processes: int
    failed_tests: list[str]
    fault_cases: list[str]

    @property
    def security_failed_tests(self) -> list[str]:
        return [t for t in self.failed_tests if any(name in t for name in SECURITY_TEST_FILES)]


class StalledBody(Result):
    status: int | None  # None: the connection closed without an answer
    seconds: float


class StreamHangUp(Result):
    first_event: bool
    idle_1_token_s: float
    after_hang_up_1_token_s: float
    budget: int


class BadInputLiveResult(Result):
    """The hostile table, raw HTTP garbage, a stalled body and a hung-up stream against the live server."""

    cases: int
    table_cases: int
    raw_http_cases: int
    statuses: dict[str, int]
    closed_while_sending: int
    server_errors: int
    problems: list[str]
    problem_count: int
    raw_statuses: dict[str, int | str]  # "closed": no answer
    plain_text_errors: int  # answered by BentoML itself (paths outside the app's routes)
    stalled_body: StalledBody | None  # None: no answer within the wait
    stream_hang_up: StreamHangUp
    crashed_processes: int
    service_processes_same: bool
    jobs_queued_by_bad_input: int
    seconds: float

    @property
    def live_only_cases(self) -> int:
        """Cases the quick part did not already count (it sends the same hostile table)."""
        return self.cases - self.table_cases


class SecurityLiveResult(Result):
    auth_checks: int
    auth_checks_failed: list[str]
    token_in_server_logs: bool
    token_in_job_logs: bool
    service_uids_here: list[int]
