"""RELIABILITY.md from the typed figures of a run: the goals of the issue, each with what was measured and
whether it was met, then the figures by section.

Only renders: every goal is judged by its scenario's result (`reliability.results`). A goal that was not met is
marked NOT MET with its figures; its cause comes from `notes` (goal id -> explanation, passed with --notes after
investigating) or, where the harness knows it, from the run itself (e.g. a smoke run with shortened durations).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from reliability.results import Figures, ScenarioError
from reliability.results.bad_input import BadInputLiveResult, QuickResult, SecurityLiveResult
from reliability.results.figures import RunArgs, Setup
from reliability.results.load import LoadResult, SoakResult

# What this suite found when it was written, each with its regression test (tests/reliability unless named).
DEFECTS = [
    "Fixed: text that is not valid Unicode (a lone surrogate such as `\\ud800`, legal in JSON escapes) in any request "
    "field was a 500 (the tokenizer and the JSON encoder fail on it) -> 422 naming the field. Tests: hostile `unicode/*`, "
    "`uploads/lone-surrogate`, `types/specialists/*-lone-surrogate`.",
    "Fixed: a temperature that underflows (1e-300, 5e-324) made NaN probabilities: a 500 for it and every request "
    "batched with it -> below 1e-4 decoding is greedy. Tests: hostile `sampling/*/temperature-*`.",
    "Fixed: `/admin/promote` with a version beyond 64 bits was a 500 (SQLite overflow) -> 422. Test: hostile "
    "`types/admin-promote/version-beyond-int64`.",
    "Fixed: NaN/Infinity literals (accepted by Python's JSON parser) passed validation, e.g. a job's gate.min_score NaN "
    "was stored and its job could no longer be read back -> 422. Tests: hostile `types/specialists/gate-nan`, "
    "`gate-infinity`, `malformed/*/nan-literal`.",
    "Fixed: an upload nested too deeply or with a 5000-digit number was a 500 -> 400. Tests: hostile `uploads/deep-nesting*`, "
    "`uploads/huge-integer`.",
    "Fixed: `POST /specialists` naming a SuperNI file nested too deeply or with a huge number was a 500 -> 422 naming the "
    "file. Test: test_bad_files.py::test_malformed_superni_files_are_refused_by_the_api.",
    "Fixed: admin endpoints read and validated the body before the token, so a client without a token got 400/413/422 "
    "(and cost a parse) instead of 401 -> the token is checked first. Tests: test_security.py (garbage bodies), the "
    "no-token fuzz.",
    "Fixed: a registry that cannot be written (read-only home, disk full) made /admin/promote|rollback|reload a bare 500 "
    "-> 503 naming the cause; the served routes keep serving. Tests: test_faults.py::test_a_registry_that_cannot_be_written_*, "
    "live fault `unwritable_registry`.",
    "Fixed: /readyz waited on the registry (30 s SQLite busy timeout) and failed while it could not be read, though the "
    "service kept serving -> readiness from the last read. Test: test_faults.py::test_readiness_does_not_wait_on_an_unreadable_registry.",
    "Fixed: after a restart, a task whose newest champion is refused (a corrupt adapter pushed with --skip-gate) was not "
    "served at all (404) -> the newest earlier champion that loads serves. Test: test_faults.py::"
    "test_after_a_restart_a_refused_champion_leaves_the_previous_one_serving; live fault `kill_restart` (`served_after`).",
    "Fixed: a client gone half-way through its body left the request in flight for BentoML's whole 600 s timeout, which "
    "also blocked a graceful stop (SIGTERM needed SIGKILL) -> the app always answers. Test: test_stream_disconnect.py::"
    "test_a_client_gone_mid_body_does_not_hold_its_request.",
    "Fixed: a body that never arrives held its request for 600 s (slowloris) -> 408 after `body_timeout_seconds` (30 s). "
    "Test: test_stream_disconnect.py::test_a_body_that_stalls_gets_408_instead_of_holding_the_request; live `stalled_body`.",
    "Fixed: the admin token was handed to every training-job process (which runs on request data) -> not any more. "
    "Test: test_security.py::test_the_token_never_reaches_a_log_a_response_or_a_job.",
    "Fixed: unhandled errors answered bare `Internal Server Error` text; unknown paths, wrong methods and unparsable "
    "bodies said only `Not Found` / `Method Not Allowed` / `There was an error parsing the body` -> JSON messages naming "
    "the path, method or cause. Tests: hostile `routing/*`, `malformed/*`.",
    "Fixed (engine): a streaming client that disconnects kept its generation running to the end -> its row leaves the "
    "batch at the next token. Tests: test_stream_disconnect.py::test_a_client_that_disconnects_mid_stream_stops_its_generation, "
    "tests/service/test_engine.py::test_a_request_whose_client_left_stops_generating.",
    "Fixed (inference/multi_lora.py): an adapter_config.json that disagrees with its tensors (rank r, target modules "
    "of another architecture) loaded and was served -> refused at load with the mismatch. Tests: "
    "test_bad_files.py::test_adapters_that_pass_registration_*[wrong-shapes|other-base-config].",
    "Fixed (specialist/superni.py, specialist/generalist.py): the loaders let RecursionError/ValueError through for JSON "
    "nested too deeply or numbers with >4300 digits (a CLI traceback) -> a one-line error naming the file. Tests: "
    "test_bad_files.py::test_malformed_*_files_are_refused_*[deep*|huge*].",
    "Fixed (cli/main.py): `specialist registry add` on a read-only or full home printed a traceback -> one line naming "
    "the cause. Test: test_faults.py::test_the_cli_reports_an_unwritable_registry_in_one_line; live fault `unwritable_registry` (CLI).",
    "Found by the soak: with the default torch threads (all cores), a running training job made serving ~40x slower on "
    "2 cores (8 clients: p50 2.3 s idle -> 98.8 s while training; with `--num-threads 1`: 3.7 s -> 3.7 s). Fixed: the "
    "engine decodes with `job_threads` fewer threads while a job runs. Test: tests/service/test_app.py::"
    "test_serving_gives_up_cores_while_a_job_trains; the soak's latency shows it.",
    "Found, BentoML's: paths outside the app's routes get BentoML's own plain-text `Not Found`; and its worker runs in "
    "a process group of its own, so a SIGKILL of the main PID leaves it serving as an orphan (a restart then fails with "
    "`Address already in use`). In a container both die together; elsewhere stop the whole process tree.",
]


def _shown(path) -> str:
    """A path as the report shows it: relative to the checkout when inside it (the report is committed)."""
    from service.live import REPO

    try:
        return str(Path(path).resolve().relative_to(REPO))
    except (TypeError, ValueError):
        return str(path)


def render(f: Figures, notes: dict[str, str]) -> str:
    rows, args = f.goals(), f.args
    when = f.finished_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
    lines = [
        "# Reliability",
        "",
        f"Measured {when[:10]} ({when}) by `make reliability` (`python -m reliability`) on {f.machine}.",
        "Regenerate with the same command; every figure below comes from that run "
        f"(raw figures: `{_shown(args.json_path)}`).",
        "",
    ]
    if args.smoke:
        lines += [
            "> **Smoke run:** durations were shortened ("
            + ", ".join(
                f"{k.replace('_', '-')} {getattr(args, k)}"
                for k in ("load_seconds", "clients", "soak_seconds", "fault_seconds")
            )
            + "); the issue's goals ask for 32 clients x 60 s of load and a 10-minute soak. Run `make reliability` for those.",
            "",
        ]
    met = sum(r.met is True for r in rows)
    lines += [f"**{met} of {len(rows)} goals met.**", "", "| area | goal | measured | met |", "|---|---|---|---|"]
    for r in rows:
        mark = {True: "yes", False: "**NOT MET**", None: "not measured"}[r.met]
        lines.append(f"| {r.area} | {r.goal} | {r.measured} | {mark} |")
    unmet = [r for r in rows if r.met is not True]
    if unmet:
        lines += ["", "### Shortfalls and their causes", ""]
        for r in unmet:
            cause = notes.get(r.id) or (
                "smoke run with shortened durations; not judged at full length"
                if args.smoke and r.area in ("soak", "load")
                else "not explained yet: see the figures below and the server logs in the work folder"
            )
            lines.append(f"- **{r.goal}** ({r.id}): {cause}")
    lines += ["", "## Setup", "", _setup(f.setup, args)]
    lines += ["", "## Bad input", "", _bad_input(f.quick, f.bad_input_live)]
    if f.load is not None:
        lines += ["", "## Load", "", _load(f.load)]
    faults = f.faults.ran() if f.faults is not None else {}
    if faults:
        lines += ["", "## Faults", "", _faults(faults)]
    lines += ["", "## Security", "", _security(f.security_live)]
    if f.soak is not None:
        lines += ["", "## Soak", "", _soak(f.soak)]
    lines += [
        "",
        "## Defects found by this suite",
        "",
        "Every fixed one has a regression test; the others say where the figures show them.",
        "",
        *[f"- {d}" for d in DEFECTS],
    ]
    return "\n".join(lines) + "\n"


def _did_not_finish(part: str, result: ScenarioError) -> str:
    return f"- {part}: did not finish ({result.error})."


def _setup(s: Setup | None, args: RunArgs) -> str:
    if s is None:  # only the quick part ran: no live service
        tasks, serve_args, start_s, prompts, distinct, base = {}, [], None, None, None, "SmolLM2-135M-Instruct"
    else:
        tasks, serve_args, prompts, distinct, base = (
            s.tasks,
            s.serve_args,
            s.fingerprint_prompts,
            s.distinguishable,
            s.base_model,
        )
        start_s = f"not reached ({s.start_s.error})" if isinstance(s.start_s, ScenarioError) else s.start_s
    durations = {k: v for k, v in args.model_dump().items() if k.endswith(("seconds", "clients", "examples", "tokens"))}
    return "\n".join(
        [
            f"- Service: `specialist serve` on 127.0.0.1 (BentoML, local backend), default base model ({base}), "
            f"serve flags `{' '.join(serve_args) or '(defaults)'}`; start to ready {start_s} s.",
            f"- Routed tasks: {', '.join(f'`{t}` ({n})' for t, n in tasks.items())}; each with a v1 (routed) and a v2 "
            "(registered) adapter of random LoRA weights, so that every adapter answers a prompt in its own way.",
            f"- Fingerprints: {prompts} prompts; on {distinct} of them every adapter's answer differs "
            "from every other's, so an answer from the wrong adapter is recognised (`wrong-adapter`); an answer matching none is "
            "`drift` (batching numerics), counted but not an error.",
            f"- Durations: {json.dumps(durations)}.",
        ]
    )


def _bad_input(q: QuickResult | ScenarioError | None, live: BadInputLiveResult | ScenarioError | None) -> str:
    out = []
    if isinstance(q, ScenarioError):
        out.append(_did_not_finish("In process (`tests/reliability`)", q))
    elif q is not None:
        out += [
            f"- In process (`tests/reliability`, tiny model): {q.pytest_summary}; {q.distinct_cases} distinct bad-input "
            f"cases by kind {json.dumps(q.cases_by_kind)}, {q.server_errors} answers >= 500, {q.seconds} s.",
            "  Kinds: `fuzz` = schemathesis, every OpenAPI operation, positive and negative data, with and without the admin "
            "token; `hostile` = the hand-written table (reliability/cases.py); `bad-file` = broken adapters, pickles, malformed "
            "SuperNI/Alpaca files and configs; `security` = token checks; `fault` = the in-process faults.",
        ]
        if q.failed_tests:
            out.append(f"- Failed tests: {', '.join(q.failed_tests)}")
    if isinstance(live, ScenarioError):
        out.append(_did_not_finish("Against the live server", live))
    elif live is not None:
        hang = live.stream_hang_up
        out += [
            f"- Against the live server: {live.table_cases} table cases + {live.raw_http_cases} raw-HTTP cases + a hung-up stream; "
            f"statuses {json.dumps(live.statuses)}; {live.server_errors} >= 500; service processes unchanged: "
            f"{live.service_processes_same}; jobs queued by bad input: {live.jobs_queued_by_bad_input}.",
            f"- Raw HTTP: {json.dumps(live.raw_statuses)}.",
            f"- Hung-up stream ({hang.budget} tokens asked): a 1-token request took "
            f"{hang.idle_1_token_s} s before and {hang.after_hang_up_1_token_s} s right "
            "after (much longer after = the abandoned generation kept the engine busy).",
        ]
        if live.problems:
            out.append("- Problems: " + "; ".join(live.problems[:10]))
    return "\n".join(out)


def _load(x: LoadResult | ScenarioError) -> str:
    if isinstance(x, ScenarioError):
        return _did_not_finish("Load", x)
    return "\n".join(
        [
            "| clients | seconds | requests | errors | p50 s | p90 s | p99 s | p99/p50 | requests/s | tokens/s | wrong adapter | drift |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {x.clients} | {x.seconds:g} | {x.requests} | {x.http_errors + x.transport_errors} | {x.p50_s} | {x.p90_s} | "
            f"{x.p99_s} | {x.p99_over_p50} | {x.requests_per_s} | {x.tokens_per_s} | {x.wrong_adapter} | {x.drift} of {x.judged} |",
            "",
            f"Closed-loop clients, `/predict` with `max_new_tokens` {x.max_new_tokens}, inputs drawn from the tasks' held-out instances, "
            "spread over the 4 routed tasks.",
        ]
    )


def _faults(ran: dict) -> str:
    """Each fault's figures as one JSON line (the goal rows above say what they mean)."""
    return "\n".join(
        f"- **{name.replace('_', ' ')}**: `{json.dumps(result.model_dump(), default=str)}`"
        for name, result in ran.items()
    )


def _security(s: SecurityLiveResult | ScenarioError | None) -> str:
    out = [
        "- In process (quick part): every admin route answers 401 without a token and 403 with a wrong one, before the body is "
        "read; the comparison is `hmac.compare_digest`; every hostile name on every name-taking endpoint under an audit hook "
        "of all file-system calls (no path outside the homes); a pickle `.bin` whose unpickling would write a marker file is "
        "refused by the registry, the gate and the engine, and the marker never appears; the token never reaches a log, a "
        "response or a training job's environment; the Dockerfile's final USER is uid 10001."
    ]
    if isinstance(s, ScenarioError):
        out.append(_did_not_finish("Live", s))
    elif s is not None:
        out.append(
            f"- Live: {s.auth_checks} token checks ({len(s.auth_checks_failed)} failed); token in server logs: "
            f"{s.token_in_server_logs}, in job logs: {s.token_in_job_logs}; uids of the service here: {s.service_uids_here} "
            "(this development machine runs everything as root; the container runs as uid 10001)."
        )
    return "\n".join(out)


def _soak(x: SoakResult | ScenarioError) -> str:
    if isinstance(x, ScenarioError):
        return _did_not_finish("Soak", x)
    curve = ", ".join(f"{s.t:g}s: {s.rss_mb}" for s in x.samples[:: max(1, len(x.samples) // 12)])
    return "\n".join(
        [
            f"- {x.seconds:g} s of mixed traffic ({x.clients} clients: native, OpenAI, TGI, streaming, reads, 15% bad requests) "
            f"with a specialist job training throughout ({x.jobs} job(s), {x.job_training_s:g} s of training observed); "
            f"{x.requests} requests, {x.http_errors} HTTP errors, {x.transport_errors} connection errors, "
            f"{x.wrong_adapter} wrong-adapter, p50 {x.p50_s} s, p99 {x.p99_s} s.",
            f"- RSS of the service (all its processes): start {x.rss_start_mb} MB, half-way {x.rss_half_mb} MB, end {x.rss_end_mb} MB, "
            f"max {x.rss_max_mb} MB. Curve (MB): {curve}.",
            f"- Open file descriptors {x.fds_start} -> {x.fds_end} (after the jobs were canceled: {x.fds_after}); threads "
            f"{x.threads_start} -> {x.threads_end} ({x.threads_after} after); service processes {x.processes_start} -> "
            f"{x.processes_after}; training processes after: {x.job_runners_after}; jobs ended {json.dumps(x.job_final_statuses)}.",
        ]
    )
