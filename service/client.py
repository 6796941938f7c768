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

    def wait(self, job_id: str, progress: bool = True, poll: float = 1.0) -> dict:
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
        if job.get("error") and job["status"] != "rejected":
            lines.append(f"error: {job['error']}")
        return "\n".join(lines)


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
