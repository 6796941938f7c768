"""A small client for the service's job API, used by `specialist request` and the quickstart (plain HTTP)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from tqdm.auto import tqdm

from factory.decision import BuildDecision
from service.jobs.schema import FINAL
from specialist.errors import SpecialistError


def error_message(body) -> str | None:
    """The message of an error body in either dialect's shape (None if it is not one): for clients and checks."""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    return message if isinstance(message, str) else None


class SpecialistClient:
    def __init__(self, server: str, token: str | None, timeout: float = 60):
        if not token:
            raise SpecialistError("no admin token", "pass --token or set SPECIALIST_ADMIN_TOKEN")
        self.http = httpx.Client(
            base_url=server.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    def _call(self, method: str, path: str, **kwargs) -> dict:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise SpecialistError(
                f"cannot reach {self.http.base_url}: {e}", "is `specialist serve` running there?"
            ) from None
        if response.status_code >= 400:
            try:
                message = error_message(response.json()) or response.text[:200]
            except ValueError:
                message = response.text[:200]
            raise SpecialistError(f"the server answered {response.status_code}: {message}")
        return response.json()

    def upload(self, path: Path) -> str:
        if not Path(path).is_file():
            raise SpecialistError(f"data file {path} does not exist", "pass a JSON or JSONL file")
        return self._call("POST", "/uploads", content=Path(path).read_bytes())["upload_id"]

    def submit(self, body: dict) -> str:
        return self._call("POST", "/specialists", json=body)["job_id"]

    def job(self, job_id: str) -> dict:
        return self._call("GET", f"/specialists/{job_id}")

    def events(self, job_id: str, after: int | None = None, limit: int = 100) -> dict:
        """One page of the job's events after event `after`: {data: [...], has_more}."""
        params = {"limit": limit} | ({} if after is None else {"after": after})
        return self._call("GET", f"/specialists/{job_id}/events", params=params)

    def new_events(self, job_id: str, after: int | None = None) -> list[dict]:
        """Every event after event `after`, however many pages."""
        events: list[dict] = []
        while True:
            page = self.events(job_id, after, limit=1000)
            events += page["data"]
            if not page["has_more"] or not page["data"]:
                return events
            after = page["data"][-1]["id"]

    def checkpoints(self, job_id: str) -> list[dict]:
        return self._call("GET", f"/specialists/{job_id}/checkpoints")["data"]

    def wait(self, job_id: str, progress: bool = True, poll: float = 1.0, events: bool | None = None) -> dict:
        """Poll the job until it ends; with `progress` a bar, and (unless `events` is False) one line per event
        as it arrives, above the bar."""
        show_events = progress if events is None else events
        last_event = None
        bar = tqdm(
            total=100,
            desc="queued",
            unit="%",
            disable=not progress,
            dynamic_ncols=True,
            bar_format="{desc} {percentage:3.0f}%|{bar}|{postfix}",
        )
        while True:
            job = self.job(job_id)
            if show_events:  # read after the job: a final status's event is already there
                for event in self.new_events(job_id, last_event):
                    tqdm.write(event_line(event))
                    last_event = event["id"]
            info = job.get("progress") or {}
            bar.set_description(job["status"])
            percent = info.get("percent", 100 if job["status"] in FINAL else 0)
            bar.update(max(0, percent - bar.n))
            if job["status"] == "training":
                bar.set_postfix_str(
                    f"{info.get('candidate')} step {info.get('step')}/{info.get('steps')} loss {info.get('loss', 0):.3f} ETA {info.get('eta_seconds', 0):.0f}s"
                )
            if job["status"] in FINAL:
                bar.close()
                return job
            time.sleep(poll)

    @staticmethod
    def describe(job: dict) -> str:
        """A finished job for people: the choice, every candidate's selection score and the gate's checks."""
        lines = [f"status: {job['status']}"]
        result = job.get("result") or {}
        if result.get("decision"):
            lines += _decision_lines(BuildDecision.model_validate(result["decision"]))
        if result.get("route"):
            lines.append(f"serving: {result['route']['task']} v{result['route']['version']}")
        error = job.get("error")
        if error and job["status"] != "rejected":
            code = error.get("code") if isinstance(error, dict) else None
            lines.append(f"error{f' ({code})' if code else ''}: {error_message(job)}")
        return "\n".join(lines)


def event_line(event: dict) -> str:
    """One job event for people: its time (UTC), a warning or error mark, the message; a training sample
    also its ETA."""
    mark = {"warn": "warning: ", "error": "error: "}.get(event.get("level"), "")
    line = f"[{str(event.get('created_at', ''))[11:19]}] {mark}{event['message']}"
    data = event.get("data") or {}
    if event.get("type") == "metrics" and data.get("eta_seconds") and data.get("step") != data.get("steps"):
        line += f" (ETA {data['eta_seconds']:.0f}s)"
    return line


def _decision_lines(decision: BuildDecision) -> list[str]:
    lines = [f"decision: {decision.reason}"] if decision.reason else []
    for cand in decision.candidates:
        shown = f"selection {cand.selection_score}" if cand.selection_score is not None else ""
        lines.append(f"  {cand.name}: {shown}{' <- selected' if cand.name == decision.selected else ''}".rstrip())
    gate = decision.gate
    if gate is None:
        return lines
    lines.append(f"gate on the held-out set ({round(100 * gate.confidence)}% intervals):")
    for check in gate.checks:
        verdict = "PASS" if check.passed else "UNDECIDED" if check.undecided else "FAIL"
        value = "" if check.value is None else f" {check.value:g}"
        interval = "" if check.ci_low is None else f" [{check.ci_low:g}, {check.ci_high:g}]"
        threshold = "" if check.threshold is None else f" (threshold {check.threshold:g})"
        lines.append(f"  {verdict} {check.name}{value}{interval}{threshold} {check.detail}".rstrip())
    return lines
