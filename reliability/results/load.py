"""Results of the pressure scenarios -- closed-loop load, the soak, the final stop -- each judging its goals."""

from __future__ import annotations

from reliability.results.base import Goal, Result, TrafficSummary


class LoadResult(TrafficSummary):
    clients: int
    seconds: int | float
    max_new_tokens: int
    tasks: list[str]
    p99_over_p50: float | None  # None: no request succeeded

    def goals(self) -> list[Goal]:
        errors = self.http_errors + self.transport_errors
        return [
            Goal(
                id="load-errors",
                area="load",
                goal=f"{self.clients} clients x {self.seconds:g} s: 0 errors",
                measured=str(errors),
                met=errors == 0,
            ),
            Goal(
                id="load-tail",
                area="load",
                goal="p99 <= 5 x p50",
                measured=f"p50 {self.p50_s} s, p99 {self.p99_s} s ({self.p99_over_p50}x)",
                met=self.p99_over_p50 is not None and self.p99_over_p50 <= 5,
            ),
            Goal(
                id="load-wrong-adapter",
                area="load",
                goal="0 wrong-adapter answers",
                measured=f"{self.wrong_adapter} of {self.judged} judged",
                met=self.wrong_adapter == 0,
            ),
        ]


class Sample(Result):
    """The service's processes at one moment of the soak (`LiveServer.snapshot`, with its time)."""

    t: float
    processes: int
    pids: list[int]
    rss_mb: float
    fds: int
    threads: int
    job_runners: int


class SoakResult(Result):
    seconds: int | float
    clients: int
    warmup_s: float
    requests: int
    ok: int
    http_errors: int
    http_error_examples: list[str]
    transport_errors: int
    wrong_adapter: int
    drift: int
    judged: int
    p50_s: float | None
    p99_s: float | None
    requests_per_s: float
    rss_start_mb: float
    rss_half_mb: float
    rss_end_mb: float
    rss_max_mb: float
    rss_growth_pct: float
    rss_growth_second_half_mb: float
    fds_start: int
    fds_end: int
    fds_after: int
    threads_start: int
    threads_end: int
    threads_after: int
    processes_start: int
    processes_end: int
    processes_after: int
    job_runners_during: int
    job_runners_after: int
    jobs: int
    job_final_statuses: dict[str, int]
    job_training_s: float
    samples: list[Sample]

    def goals(self) -> list[Goal]:
        bounded = (
            self.rss_end_mb <= self.rss_start_mb * 1.10 or self.rss_growth_second_half_mb <= 0.02 * self.rss_start_mb
        )
        leaks = (
            self.processes_after != self.processes_start
            or self.job_runners_after != 0
            or self.fds_after - self.fds_start > 20
        )
        errors = self.http_errors + self.transport_errors
        return [
            Goal(
                id="soak-memory",
                area="soak",
                goal="memory growth bounded (<= 10%, or flat over the second half)",
                measured=f"RSS {self.rss_start_mb} -> {self.rss_end_mb} MB ({self.rss_growth_pct:+}%), "
                f"second half {self.rss_growth_second_half_mb:+} MB",
                met=bounded,
            ),
            Goal(
                id="soak-leaks",
                area="soak",
                goal="no leaked processes or file handles",
                measured=f"processes {self.processes_start} -> {self.processes_after}, job runners after: "
                f"{self.job_runners_after}, fds {self.fds_start} -> {self.fds_after}",
                met=not leaks,
            ),
            Goal(
                id="soak-errors",
                area="soak",
                goal="mixed traffic with a job training: 0 errors",
                measured=f"{errors} of {self.requests}",
                met=errors == 0 and self.wrong_adapter == 0,
            ),
        ]


class ShutdownResult(Result):
    exit_code: int | None  # None: the service was not running
    processes_left: int
    job_runners_left: int

    def goals(self) -> list[Goal]:
        return [
            Goal(
                id="shutdown",
                area="soak",
                goal="clean stop: no process left behind",
                measured=f"exit {self.exit_code}, {self.processes_left} processes, "
                f"{self.job_runners_left} job runners left",
                met=self.processes_left == 0 and self.job_runners_left == 0,
            )
        ]
