"""The typed results of the reliability scenarios: the stored figures round-trip, and each result judges its
own goals (the report only renders them)."""

import json
from pathlib import Path

from reliability.report import render
from reliability.results import Figures, ScenarioError, load_figures
from reliability.results.faults import FaultsResults, KillTrainingResult
from reliability.traffic import Traffic

STORED = Path(__file__).resolve().parents[2] / "docs" / "results" / "reliability.json"


def _stored() -> dict:
    return json.loads(STORED.read_text())


def _same(a, b) -> bool:
    """Equal with the same key order and the same types (60 is not 60.0 in the JSON)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_the_stored_figures_round_trip():
    dumped = json.loads(json.dumps(load_figures(STORED).to_json(), default=str))
    assert _same(dumped, _stored())


def test_figures_assembled_as_a_run_does_dump_the_same_json():
    """`python -m reliability` collects typed results (faults as a dict) and makes one Figures at the end."""
    f = load_figures(STORED)
    parts = {
        k: getattr(f, k) for k in ("quick", "setup", "bad_input_live", "security_live", "load", "soak", "shutdown")
    }
    assembled = Figures(
        args=f.args,
        started_at=f.started_at,
        machine=f.machine,
        parts=f.parts,
        **parts,
        faults=dict(f.faults.ran()),
        finished_at=f.finished_at,
    )
    assert _same(json.loads(json.dumps(assembled.to_json(), default=str)), _stored())


NOTES = STORED.with_name("reliability_notes.json")  # the causes of the stored run's shortfalls, investigated


def test_the_stored_run_meets_every_goal_or_its_shortfall_has_an_investigated_cause():
    rows, notes = load_figures(STORED).goals(), json.loads(NOTES.read_text())
    unmet = {r.id for r in rows if r.met is not True}
    assert len(rows) == 21 and unmet == set(notes), (
        f"unexplained: {unmet - set(notes)}; stale notes: {set(notes) - unmet}"
    )
    report = render(load_figures(STORED), notes)
    assert f"**{21 - len(unmet)} of 21 goals met.**" in report and all(cause in report for cause in notes.values())


def test_a_failing_figure_fails_its_goal():
    data = _stored()
    data["load"]["http_errors"] = 3
    data["faults"]["corrupt_skip_gate"]["wrong-dims"]["failed_requests"] = 1
    data["soak"]["fds_after"] = data["soak"]["fds_start"] + 21
    met = {r.id: r.met for r in Figures.model_validate(data).goals()}
    assert met["load-errors"] is False and met["fault-corrupt"] is False and met["soak-leaks"] is False
    assert met["load-tail"] is True and met["fault-kill-training"] is True


def test_passed_is_judged_from_the_figures_not_read_back():
    """A stored `passed` is recomputed; kill-training's includes the service's health (the report's criterion)."""
    data = _stored()["faults"]["kill_training"] | {"healthy": False, "passed": True}
    result = KillTrainingResult.model_validate(data)
    assert result.passed is False and result.model_dump()["passed"] is False
    assert [g.met for g in result.goals()] == [False]


def test_a_scenario_that_raised_is_an_unmet_goal():
    data = _stored()
    data["load"] = {"error": "RuntimeError: boom"}
    data["faults"]["kill_restart"] = {"error": "OSError: gone"}
    f = Figures.model_validate(data)
    assert isinstance(f.load, ScenarioError) and isinstance(f.faults.kill_restart, ScenarioError)
    met = {r.id: (r.met, r.measured) for r in f.goals()}
    assert met["load-ran"] == (False, "RuntimeError: boom") and "load-errors" not in met
    assert met["fault-kill_restart-ran"] == (False, "OSError: gone")
    assert "did not finish (RuntimeError: boom)" in render(f, {})
    assert json.loads(json.dumps(f.to_json(), default=str))["load"] == {"error": "RuntimeError: boom"}


def test_a_fault_that_could_not_be_measured_is_not_judged():
    data = _stored()
    data["faults"]["unwritable_registry"]["read_only"] = {"measured": False, "why": "no mount here"}
    met = {r.id: r.met for r in FaultsResults.model_validate(data["faults"]).goals()}
    assert met["fault-read_only"] is None and "fault-read_only-cli" not in met and met["fault-disk_full"] is True


def test_a_traffic_summary_without_answers_is_typed():
    s = Traffic("http://127.0.0.1:9", None, clients=0).summary()
    assert s.requests == 0 and s.p50_s is None and s.requests_per_s == 0
