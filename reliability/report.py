"""RELIABILITY.md from the figures: the goals of the issue, each with what was measured and whether it was met.

One file (~440 lines) on purpose: one renderer of one document, its goals, defects and sections side by side.

A goal that was not met is marked NOT MET with its figures; its cause comes from `notes` (goal id ->
explanation, passed with --notes after investigating) or, where the harness knows it, from the run itself
(e.g. a smoke run with shortened durations).
"""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path


def goals(f: dict, args: dict) -> list[dict]:
    """(id, area, goal, measured, met) rows; met is None when the scenario did not run."""
    q, live, load, faults, sec, soak = (
        f.get(k) or {} for k in ("quick", "bad_input_live", "load", "faults", "security_live", "soak")
    )
    rows = []

    def row(id_, area, goal, measured, met):
        rows.append({"id": id_, "area": area, "goal": goal, "measured": measured, "met": met})

    if q or live:
        # The live run re-sends the hostile table the quick part already counted: only its other cases are new.
        live_only = (live.get("cases") or 0) - (live.get("table_cases") or 0)
        cases = (q.get("distinct_cases") or 0) + live_only
        errors5 = (q.get("server_errors") or 0) + (live.get("server_errors") or 0)
        crashed = (q.get("crashed_processes") or 0) + (live.get("crashed_processes") or 0)
        problems = len(q.get("problems") or []) + (live.get("problem_count") or 0) + (q.get("failures") or 0)
        row(
            "bad-input-cases",
            "bad input",
            ">= 300 distinct cases",
            f"{cases} ({q.get('distinct_cases', 0)} in process + {live_only} only live; the "
            f"{live.get('table_cases', 0)} table cases also re-sent live)",
            cases >= 300,
        )
        row("bad-input-5xx", "bad input", "0 responses >= 500", str(errors5), errors5 == 0)
        row("bad-input-crashes", "bad input", "0 crashed processes", str(crashed), crashed == 0)
        row(
            "bad-input-messages",
            "bad input",
            "every error names the problem (and every quick test passes)",
            f"{problems} problems, {q.get('failures', 0)} failed tests",
            problems == 0,
        )
    if load:
        errors = load["http_errors"] + load["transport_errors"]
        row(
            "load-errors",
            "load",
            f"{load['clients']} clients x {load['seconds']:g} s: 0 errors",
            str(errors),
            errors == 0,
        )
        row(
            "load-tail",
            "load",
            "p99 <= 5 x p50",
            f"p50 {load['p50_s']} s, p99 {load['p99_s']} s ({load['p99_over_p50']}x)",
            load["p99_over_p50"] is not None and load["p99_over_p50"] <= 5,
        )
        row(
            "load-wrong-adapter",
            "load",
            "0 wrong-adapter answers",
            f"{load['wrong_adapter']} of {load['judged']} judged",
            load["wrong_adapter"] == 0,
        )
    p = faults.get("promotion_during_load")
    if p:
        row(
            "fault-promotion",
            "faults",
            "promotion + rollback under load: 0 failed requests",
            f"{p['failed_requests']} failed of {p['requests']}, {p['swaps']} swaps ({p['swaps_failed']} failed), {p['wrong_adapter']} wrong-adapter",
            p["failed_requests"] == 0 and p["swaps_failed"] == 0 and p["wrong_adapter"] == 0,
        )
    k = faults.get("kill_training")
    if k:
        row(
            "fault-kill-training",
            "faults",
            "kill the training process mid-job: job failed, registry unchanged, service healthy",
            f"job {k['status']}, registry unchanged: {k['registry_unchanged']}, healthy: {k['healthy']}",
            k["status"] == "failed" and k["registry_unchanged"] and k["healthy"] and bool(k["killed_pid"]),
        )
    r = faults.get("kill_restart")
    if r:
        ok = (
            r["job_status_after"] == "failed"
            and r["routes_intact"]
            and r["http_errors"] == 0
            and r["wrong_adapter"] == 0
            and r["job_runners_left"] == 0
        )
        row(
            "fault-restart",
            "faults",
            "kill + restart mid-job and mid-load: records intact, only connection errors, no wrong adapter",
            f"job {r['job_status_after']}, routes intact: {r['routes_intact']}, {r['transport_errors']} connection errors, "
            f"{r['http_errors']} HTTP errors, {r['wrong_adapter']} wrong-adapter, gap {r['gap_s']} s",
            ok,
        )
    u = faults.get("unwritable_registry")
    if u:
        for key, label in (("read_only", "read-only registry home"), ("disk_full", "disk full")):
            x = u.get(key, {})
            if not x.get("measured"):
                row(
                    f"fault-{key}",
                    "faults",
                    f"{label} during promotion: clear error, champion served",
                    x.get("why", "not run"),
                    None,
                )
                continue
            clear = 400 <= x["promote_status"] < 600 and "SPECIALIST_HOME" in x["promote_message"]
            row(
                f"fault-{key}",
                "faults",
                f"{label} during promotion (API): clear error, champion still served",
                f'POST /admin/promote: {x["promote_status"]} "{x["promote_message"][:110]}..."; champion served: '
                f"{x['champion_still_served']} ({x['answers']})",
                clear and x["champion_still_served"],
            )
            cli = x["cli_add"]
            row(
                f"fault-{key}-cli",
                "faults",
                f"{label} during promotion (CLI `registry add`): a one-line error",
                f"exit {cli['exit_code']}, traceback: {cli['traceback']}, last line: `{cli['stderr_last_line'][:110]}`",
                cli["exit_code"] != 0 and not cli["traceback"],
            )
    c = faults.get("corrupt_skip_gate")
    if c:
        ok = all(v["passed"] for v in c.values())
        row(
            "fault-corrupt",
            "faults",
            "corrupt adapter promoted with --skip-gate: refused at load, champion keeps serving",
            "; ".join(
                f"{d}: refused={bool(v['refused'])}, served v{v['served_version']}, {v['failed_requests']} failed"
                for d, v in c.items()
            ),
            ok,
        )
    if sec or q:
        failed = len(sec.get("auth_checks_failed") or [])
        security_failed = [t for t in q.get("failed_tests") or [] if "test_security" in t or "test_bad_files" in t]
        row(
            "security-auth",
            "security",
            "admin + /specialists: 401/403 without the right token (constant-time); names never "
            "reach paths outside the homes; safetensors only; non-root container",
            f"{sec.get('auth_checks', 0)} live token checks, {failed} failed; quick part (test_security.py, test_bad_files.py): "
            f"{len(security_failed)} failed",
            failed == 0 and not security_failed,
        )
        row(
            "security-logs",
            "security",
            "no secrets in logs",
            f"token in server logs: {sec.get('token_in_server_logs')}, in job logs: {sec.get('token_in_job_logs')}",
            not sec.get("token_in_server_logs") and not sec.get("token_in_job_logs"),
        )
    if soak:
        bounded = (
            soak["rss_end_mb"] <= soak["rss_start_mb"] * 1.10
            or soak["rss_growth_second_half_mb"] <= 0.02 * soak["rss_start_mb"]
        )
        row(
            "soak-memory",
            "soak",
            "memory growth bounded (<= 10%, or flat over the second half)",
            f"RSS {soak['rss_start_mb']} -> {soak['rss_end_mb']} MB ({soak['rss_growth_pct']:+}%), second half {soak['rss_growth_second_half_mb']:+} MB",
            bounded,
        )
        leaks = (
            soak["processes_after"] != soak["processes_start"]
            or soak["job_runners_after"] != 0
            or soak["fds_after"] - soak["fds_start"] > 20
        )
        row(
            "soak-leaks",
            "soak",
            "no leaked processes or file handles",
            f"processes {soak['processes_start']} -> {soak['processes_after']}, job runners after: {soak['job_runners_after']}, "
            f"fds {soak['fds_start']} -> {soak['fds_after']}",
            not leaks,
        )
        row(
            "soak-errors",
            "soak",
            "mixed traffic with a job training: 0 errors",
            f"{soak['http_errors'] + soak['transport_errors']} of {soak['requests']}",
            soak["http_errors"] + soak["transport_errors"] == 0 and soak["wrong_adapter"] == 0,
        )
    stop = f.get("shutdown")
    if stop:
        row(
            "shutdown",
            "soak",
            "clean stop: no process left behind",
            f"exit {stop['exit_code']}, {stop['processes_left']} processes, "
            f"{stop['job_runners_left']} job runners left",
            stop["processes_left"] == 0 and stop["job_runners_left"] == 0,
        )
    return rows


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
    "tests/service/test_app.py::test_a_request_whose_client_left_stops_generating.",
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


def render(f: dict, args: dict, notes: dict[str, str]) -> str:
    rows = goals(f, args)
    smoke = args.get("load_seconds", 60) < 60 or args.get("soak_seconds", 600) < 600 or args.get("clients", 32) < 32
    when = f.get("finished_at") or datetime.now(timezone.utc).isoformat(timespec="seconds")
    lines = [
        "# Reliability",
        "",
        f"Measured {when[:10]} ({when}) by `make reliability` (`python -m reliability`) on {f.get('machine', platform.platform())}.",
        "Regenerate with the same command; every figure below comes from that run "
        f"(raw figures: `{_shown(args.get('json'))}`).",
        "",
    ]
    if smoke:
        lines += [
            "> **Smoke run:** durations were shortened ("
            + ", ".join(
                f"{k.replace('_', '-')} {args[k]}"
                for k in ("load_seconds", "clients", "soak_seconds", "fault_seconds")
                if k in args
            )
            + "); the issue's goals ask for 32 clients x 60 s of load and a 10-minute soak. Run `make reliability` for those.",
            "",
        ]
    met = sum(r["met"] is True for r in rows)
    lines += [f"**{met} of {len(rows)} goals met.**", "", "| area | goal | measured | met |", "|---|---|---|---|"]
    for r in rows:
        mark = {True: "yes", False: "**NOT MET**", None: "not measured"}[r["met"]]
        lines.append(f"| {r['area']} | {r['goal']} | {r['measured']} | {mark} |")
    unmet = [r for r in rows if r["met"] is not True]
    if unmet:
        lines += ["", "### Shortfalls and their causes", ""]
        for r in unmet:
            cause = notes.get(r["id"]) or (
                "smoke run with shortened durations; not judged at full length"
                if smoke and r["area"] in ("soak", "load")
                else "not explained yet: see the figures below and the server logs in the work folder"
            )
            lines.append(f"- **{r['goal']}** ({r['id']}): {cause}")
    lines += ["", "## Setup", "", _setup(f, args)]
    lines += ["", "## Bad input", "", _bad_input(f)]
    if f.get("load"):
        lines += ["", "## Load", "", _load(f["load"])]
    if f.get("faults"):
        lines += ["", "## Faults", "", _faults(f["faults"])]
    lines += ["", "## Security", "", _security(f)]
    if f.get("soak"):
        lines += ["", "## Soak", "", _soak(f["soak"])]
    lines += [
        "",
        "## Defects found by this suite",
        "",
        "Every fixed one has a regression test; the others say where the figures show them.",
        "",
        *[f"- {d}" for d in DEFECTS],
    ]
    return "\n".join(lines) + "\n"


def _setup(f: dict, args: dict) -> str:
    s = f.get("setup", {})
    return "\n".join(
        [
            f"- Service: `specialist serve` on 127.0.0.1 (BentoML, local backend), default base model ({s.get('base_model', 'SmolLM2-135M-Instruct')}), "
            f"serve flags `{' '.join(s.get('serve_args', [])) or '(defaults)'}`; start to ready {s.get('start_s')} s.",
            f"- Routed tasks: {', '.join(f'`{t}` ({n})' for t, n in s.get('tasks', {}).items())}; each with a v1 (routed) and a v2 "
            "(registered) adapter of random LoRA weights, so that every adapter answers a prompt in its own way.",
            f"- Fingerprints: {s.get('fingerprint_prompts')} prompts; on {s.get('distinguishable')} of them every adapter's answer differs "
            "from every other's, so an answer from the wrong adapter is recognised (`wrong-adapter`); an answer matching none is "
            "`drift` (batching numerics), counted but not an error.",
            f"- Durations: {json.dumps({k: v for k, v in args.items() if k.endswith(('seconds', 'clients', 'examples', 'tokens'))})}.",
        ]
    )


def _bad_input(f: dict) -> str:
    q, live = f.get("quick") or {}, f.get("bad_input_live") or {}
    out = []
    if q:
        out += [
            f"- In process (`tests/reliability`, tiny model): {q.get('pytest_summary')}; {q.get('distinct_cases')} distinct bad-input "
            f"cases by kind {json.dumps(q.get('cases_by_kind'))}, {q.get('server_errors')} answers >= 500, {q.get('seconds')} s.",
            "  Kinds: `fuzz` = schemathesis, every OpenAPI operation, positive and negative data, with and without the admin "
            "token; `hostile` = the hand-written table (reliability/cases.py); `bad-file` = broken adapters, pickles, malformed "
            "SuperNI/Alpaca files and configs; `security` = token checks; `fault` = the in-process faults.",
        ]
        if q.get("failed_tests"):
            out.append(f"- Failed tests: {', '.join(q['failed_tests'])}")
    if live:
        out += [
            f"- Against the live server: {live['table_cases']} table cases + {live['raw_http_cases']} raw-HTTP cases + a hung-up stream; "
            f"statuses {json.dumps(live['statuses'])}; {live['server_errors']} >= 500; service processes unchanged: "
            f"{live['service_processes_same']}; jobs queued by bad input: {live['jobs_queued_by_bad_input']}.",
            f"- Raw HTTP: {json.dumps(live['raw_statuses'])}.",
            f"- Hung-up stream ({live['stream_hang_up']['budget']} tokens asked): a 1-token request took "
            f"{live['stream_hang_up']['idle_1_token_s']} s before and {live['stream_hang_up']['after_hang_up_1_token_s']} s right "
            "after (much longer after = the abandoned generation kept the engine busy).",
        ]
        if live.get("problems"):
            out.append("- Problems: " + "; ".join(live["problems"][:10]))
    return "\n".join(out)


def _load(x: dict) -> str:
    return "\n".join(
        [
            "| clients | seconds | requests | errors | p50 s | p90 s | p99 s | p99/p50 | requests/s | tokens/s | wrong adapter | drift |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {x['clients']} | {x['seconds']:g} | {x['requests']} | {x['http_errors'] + x['transport_errors']} | {x['p50_s']} | {x['p90_s']} | "
            f"{x['p99_s']} | {x['p99_over_p50']} | {x['requests_per_s']} | {x['tokens_per_s']} | {x['wrong_adapter']} | {x['drift']} of {x['judged']} |",
            "",
            f"Closed-loop clients, `/predict` with `max_new_tokens` {x['max_new_tokens']}, inputs drawn from the tasks' held-out instances, "
            "spread over the 4 routed tasks.",
        ]
    )


def _faults(x: dict) -> str:
    out = []
    for name, data in x.items():
        shown = {k: v for k, v in data.items() if k != "samples"} if isinstance(data, dict) else data
        out.append(f"- **{name.replace('_', ' ')}**: `{json.dumps(shown, default=str)}`")
    return "\n".join(out)


def _security(f: dict) -> str:
    s = f.get("security_live") or {}
    out = [
        "- In process (quick part): every admin route answers 401 without a token and 403 with a wrong one, before the body is "
        "read; the comparison is `hmac.compare_digest`; every hostile name on every name-taking endpoint under an audit hook "
        "of all file-system calls (no path outside the homes); a pickle `.bin` whose unpickling would write a marker file is "
        "refused by the registry, the gate and the engine, and the marker never appears; the token never reaches a log, a "
        "response or a training job's environment; the Dockerfile's final USER is uid 10001."
    ]
    if s:
        out.append(
            f"- Live: {s['auth_checks']} token checks ({len(s['auth_checks_failed'])} failed); token in server logs: "
            f"{s['token_in_server_logs']}, in job logs: {s['token_in_job_logs']}; uids of the service here: {s['service_uids_here']} "
            "(this development machine runs everything as root; the container runs as uid 10001)."
        )
    return "\n".join(out)


def _soak(x: dict) -> str:
    samples = x.get("samples", [])
    curve = ", ".join(f"{s['t']:g}s: {s['rss_mb']}" for s in samples[:: max(1, len(samples) // 12)])
    return "\n".join(
        [
            f"- {x['seconds']:g} s of mixed traffic ({x['clients']} clients: native, OpenAI, TGI, streaming, reads, 15% bad requests) "
            f"with a specialist job training throughout ({x['jobs']} job(s), {x['job_training_s']:g} s of training observed); "
            f"{x['requests']} requests, {x['http_errors']} HTTP errors, {x['transport_errors']} connection errors, "
            f"{x['wrong_adapter']} wrong-adapter, p50 {x['p50_s']} s, p99 {x['p99_s']} s.",
            f"- RSS of the service (all its processes): start {x['rss_start_mb']} MB, half-way {x['rss_half_mb']} MB, end {x['rss_end_mb']} MB, "
            f"max {x['rss_max_mb']} MB. Curve (MB): {curve}.",
            f"- Open file descriptors {x['fds_start']} -> {x['fds_end']} (after the jobs were canceled: {x['fds_after']}); threads "
            f"{x['threads_start']} -> {x['threads_end']} ({x['threads_after']} after); service processes {x['processes_start']} -> "
            f"{x['processes_after']}; training processes after: {x['job_runners_after']}; jobs ended {json.dumps(x['job_final_statuses'])}.",
        ]
    )
