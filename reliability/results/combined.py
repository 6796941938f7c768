"""The goals that combine scenarios: bad input and security are each measured by the quick part and again
against the live server, and judged on both together. Every other goal is judged by its own result."""

from __future__ import annotations

from reliability.results.bad_input import BadInputLiveResult, QuickResult, SecurityLiveResult
from reliability.results.base import Goal, ScenarioError

BAD_INPUT_GOALS = {
    "bad-input-cases": ">= 300 distinct cases",
    "bad-input-5xx": "0 responses >= 500",
    "bad-input-crashes": "0 crashed processes",
    "bad-input-messages": "every error names the problem (and every quick test passes)",
}
SECURITY_GOALS = {
    "security-auth": "admin + /specialists: 401/403 without the right token (constant-time); names never "
    "reach paths outside the homes; safetensors only; non-root container",
    "security-logs": "no secrets in logs",
}


def bad_input_goals(
    quick: QuickResult | ScenarioError | None, live: BadInputLiveResult | ScenarioError | None
) -> list[Goal]:
    """Distinct cases, 5xx, crashes and messages over the quick part and the live run (either may be absent)."""
    if quick is None and live is None:
        return []
    if failed := _failed(quick=quick, live=live):
        return _unmet("bad input", BAD_INPUT_GOALS, failed)
    # The live run re-sends the hostile table the quick part already counted: only its other cases are new.
    live_only = live.live_only_cases if live else 0
    in_process = quick.distinct_cases if quick else 0
    cases = in_process + live_only
    errors5 = (quick.server_errors if quick else 0) + (live.server_errors if live else 0)
    crashed = (quick.crashed_processes if quick else 0) + (live.crashed_processes if live else 0)
    failures = quick.failures if quick else 0
    problems = (len(quick.problems) if quick else 0) + (live.problem_count if live else 0) + (failures or 0)
    table = live.table_cases if live else 0
    measured = {
        "bad-input-cases": (
            f"{cases} ({in_process} in process + {live_only} only live; the {table} table cases also re-sent live)",
            cases >= 300,
        ),
        "bad-input-5xx": (str(errors5), errors5 == 0),
        "bad-input-crashes": (str(crashed), crashed == 0),
        "bad-input-messages": (f"{problems} problems, {failures} failed tests", problems == 0),
    }
    return [
        Goal(id=i, area="bad input", goal=BAD_INPUT_GOALS[i], measured=m, met=met) for i, (m, met) in measured.items()
    ]


def security_goals(
    quick: QuickResult | ScenarioError | None, live: SecurityLiveResult | ScenarioError | None
) -> list[Goal]:
    """Token checks (live and the quick part's security tests) and secrets in logs (live)."""
    if quick is None and live is None:
        return []
    if failed := _failed(quick=quick, live=live):
        return _unmet("security", SECURITY_GOALS, failed)
    checks, failed_checks = (live.auth_checks, len(live.auth_checks_failed)) if live else (0, 0)
    failed_tests = quick.security_failed_tests if quick else []
    in_server, in_jobs = (live.token_in_server_logs, live.token_in_job_logs) if live else (None, None)
    measured = {
        "security-auth": (
            f"{checks} live token checks, {failed_checks} failed; quick part (test_security.py, test_bad_files.py): "
            f"{len(failed_tests)} failed",
            failed_checks == 0 and not failed_tests,
        ),
        # Without the live part nothing was found in the logs (the quick part's token test is in security-auth).
        "security-logs": (f"token in server logs: {in_server}, in job logs: {in_jobs}", not in_server and not in_jobs),
    }
    return [
        Goal(id=i, area="security", goal=SECURITY_GOALS[i], measured=m, met=met) for i, (m, met) in measured.items()
    ]


def _failed(**parts) -> str:
    return "; ".join(f"{name} part: {p.error}" for name, p in parts.items() if isinstance(p, ScenarioError))


def _unmet(area: str, goals: dict[str, str], failed: str) -> list[Goal]:
    return [Goal(id=i, area=area, goal=g, measured=f"did not finish ({failed})", met=False) for i, g in goals.items()]
