"""Results of the fault matrix against the live server, each judging its goals."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, RootModel, computed_field

from reliability.results.base import Goal, Result, ScenarioError


class PromotionResult(Result):
    """Promotions and rollbacks of two tasks under closed-loop load on all four."""

    requests: int
    failed_requests: int
    wrong_adapter: int
    drift: int
    judged: int
    swaps: int
    swaps_failed: int
    swap_p50_s: float | None
    swap_max_s: float | None
    final_routes: dict[str, int]
    errors: list[str]
    p50_s: float | None
    p99_s: float | None

    def goals(self) -> list[Goal]:
        return [
            Goal(
                id="fault-promotion",
                area="faults",
                goal="promotion + rollback under load: 0 failed requests",
                measured=f"{self.failed_requests} failed of {self.requests}, {self.swaps} swaps "
                f"({self.swaps_failed} failed), {self.wrong_adapter} wrong-adapter",
                met=self.failed_requests == 0 and self.swaps_failed == 0 and self.wrong_adapter == 0,
            )
        ]


class Health(Result):
    """A probe of the service after a fault: ready, and every task answered by its own adapter."""

    ready: bool
    readyz_s: float
    answers: dict[str, int]  # fingerprint verdict (or "http <status>") -> count
    healthy: bool


class KillTrainingResult(Result):
    """The training process of a running job SIGKILLed after its first checkpoint; then the `Health` probe (its
    fields, flat)."""

    killed_pid: int | None  # None: the job never wrote a checkpoint, nothing was killed
    killed_after_checkpoint_step: int | None
    status: str  # the job's final status
    error: str | None
    attempts: int  # times its process was started (2: killed once, resumed once)
    versions_added: int  # adapter versions the job registered
    other_routes_unchanged: bool
    runners_left: int
    ready: bool
    readyz_s: float
    answers: dict[str, int]
    healthy: bool

    @computed_field
    @property
    def passed(self) -> bool:
        return (
            bool(self.killed_pid)
            and self.status == "promoted"
            and self.attempts == 2
            and self.versions_added == 1
            and self.other_routes_unchanged
            and self.runners_left == 0
            and self.healthy
        )

    def goals(self) -> list[Goal]:
        return [
            Goal(
                id="fault-kill-training",
                area="faults",
                goal="kill the training process mid-job: resumed from its checkpoint, promoted once, service healthy",
                measured=f"killed after checkpoint {self.killed_after_checkpoint_step}: job {self.status} after "
                f"{self.attempts} attempts, {self.versions_added} version(s) added, other routes unchanged: "
                f"{self.other_routes_unchanged}, healthy: {self.healthy}",
                met=self.passed,
            )
        ]


class DefectOutcome(Result):
    """One corrupt adapter registered with --skip-gate while clients use its task."""

    registered: bool
    version: int | None
    refused: str | None  # the service's refusal of this version, None if it never refused it
    served_version: int | None
    requests: int
    failed_requests: int
    wrong_adapter: int
    drift: int
    ready: bool

    @computed_field
    @property
    def passed(self) -> bool:
        """Refused at load, v1 still served, no request lost or answered by another adapter, still ready."""
        return (
            bool(self.refused)
            and self.served_version == 1
            and self.failed_requests == 0
            and self.wrong_adapter == 0
            and self.ready
        )


class CorruptSkipGateResult(RootModel[dict[str, DefectOutcome]]):
    """Defect name (`badfiles.ADAPTER_DEFECTS`) -> its outcome."""

    model_config = ConfigDict(frozen=True)

    def goals(self) -> list[Goal]:
        return [
            Goal(
                id="fault-corrupt",
                area="faults",
                goal="corrupt adapter promoted with --skip-gate: refused at load, champion keeps serving",
                measured="; ".join(
                    f"{d}: refused={bool(v.refused)}, served v{v.served_version}, {v.failed_requests} failed"
                    for d, v in self.root.items()
                ),
                met=all(v.passed for v in self.root.values()),
            )
        ]


class KillRestartResult(Result):
    """The whole service SIGKILLed while a job trains and clients send, then started again on the same port."""

    job_status_before: str
    job_status_after: str
    job_error_after: str | None
    job_final_status: str
    job_attempts: int
    job_versions_added: int
    job_runner_outlived_the_crash: bool
    job_runners_left: int
    gap_s: float
    restart_to_ready_s: float
    routes_intact: bool
    served_before: dict[str, int]
    served_after: dict[str, int]
    refused_after: dict[str, str]
    requests: int
    transport_errors: int
    transport_errors_by_type: dict[str, int]
    http_errors: int
    http_error_examples: list[str]
    wrong_adapter: int
    drift: int
    judged: int

    def goals(self) -> list[Goal]:
        return [
            Goal(
                id="fault-restart",
                area="faults",
                goal="kill + restart mid-job and mid-load: job resumed and promoted once, routes intact, only "
                "connection errors, no wrong adapter",
                measured=f"job {self.job_status_after} after the restart, then {self.job_final_status} after "
                f"{self.job_attempts} attempts ({self.job_versions_added} version added), routes intact: "
                f"{self.routes_intact}, {self.transport_errors} "
                f"connection errors, {self.http_errors} HTTP errors, {self.wrong_adapter} wrong-adapter, "
                f"gap {self.gap_s} s",
                met=self.job_final_status == "promoted"
                and self.job_attempts == 2
                and self.job_versions_added == 1
                and self.routes_intact
                and self.http_errors == 0
                and self.wrong_adapter == 0
                and self.job_runners_left == 0,
            )
        ]


class CliAdd(Result):
    """`specialist registry add` run against the unwritable home."""

    exit_code: int
    stderr_last_line: str
    traceback: bool


class RegistryAttempt(Result):
    """A promotion (API) and a `registry add` (CLI) while the registry cannot be written."""

    measured: Literal[True]
    how: str
    promote_status: int
    promote_message: str
    champion_still_served: bool
    answers: dict[str, int]
    cli_add: CliAdd

    def goals(self, key: str, label: str) -> list[Goal]:
        clear = 400 <= self.promote_status < 600 and "SPECIALIST_HOME" in self.promote_message
        cli = self.cli_add
        return [
            Goal(
                id=f"fault-{key}",
                area="faults",
                goal=f"{label} during promotion (API): clear error, champion still served",
                measured=f'POST /admin/promote: {self.promote_status} "{self.promote_message[:110]}..."; '
                f"champion served: {self.champion_still_served} ({self.answers})",
                met=clear and self.champion_still_served,
            ),
            Goal(
                id=f"fault-{key}-cli",
                area="faults",
                goal=f"{label} during promotion (CLI `registry add`): a one-line error",
                measured=f"exit {cli.exit_code}, traceback: {cli.traceback}, last line: `{cli.stderr_last_line[:110]}`",
                met=cli.exit_code != 0 and not cli.traceback,
            ),
        ]


class NotMeasured(Result):
    """A fault this machine cannot produce (e.g. a read-only home as root without mount)."""

    measured: Literal[False]
    why: str

    def goals(self, key: str, label: str) -> list[Goal]:
        goal = f"{label} during promotion: clear error, champion served"
        return [Goal(id=f"fault-{key}", area="faults", goal=goal, measured=self.why, met=None)]


Attempt = Annotated[RegistryAttempt | NotMeasured, Field(discriminator="measured")]


class UnwritableRegistryResult(Result):
    read_only: Attempt
    disk_full: Attempt
    registry_unchanged: bool
    promote_after_recovery: int
    service_alive: bool

    def goals(self) -> list[Goal]:
        return self.read_only.goals("read_only", "read-only registry home") + self.disk_full.goals(
            "disk_full", "disk full"
        )


class FaultsResults(Result):
    """The faults that ran, in the order they run (`None`: not run; a `ScenarioError`: it raised)."""

    promotion_during_load: PromotionResult | ScenarioError | None = None
    kill_training: KillTrainingResult | ScenarioError | None = None
    corrupt_skip_gate: CorruptSkipGateResult | ScenarioError | None = None
    kill_restart: KillRestartResult | ScenarioError | None = None
    unwritable_registry: UnwritableRegistryResult | ScenarioError | None = None

    def ran(self) -> dict[str, Result | CorruptSkipGateResult]:
        """Fault name -> its result, for those that ran, in run order."""
        return {name: getattr(self, name) for name in type(self).model_fields if getattr(self, name) is not None}

    def goals(self) -> list[Goal]:
        rows = []
        # The report's order, not the run's: the corrupt adapter's goal comes last.
        for name in (
            "promotion_during_load",
            "kill_training",
            "kill_restart",
            "unwritable_registry",
            "corrupt_skip_gate",
        ):
            result = getattr(self, name)
            if isinstance(result, ScenarioError):
                rows += result.goals(f"fault-{name}", "faults")
            elif result is not None:
                rows += result.goals()
        return rows
