"""`make reliability`: the whole suite, then RELIABILITY.md and a JSON of the figures.

    .venv/bin/python -m reliability                       # full length: load 32 x 60 s, soak 10 min (~25 min)
    .venv/bin/python -m reliability --load-seconds 10 --soak-seconds 30 --fault-seconds 8 \\
        --out /tmp/RELIABILITY.md --json /tmp/reliability.json      # a smoke run (~8 min)
    .venv/bin/python -m reliability --only quick,load     # some parts
    .venv/bin/python -m reliability --from-json docs/results/reliability.json --notes notes.json  # re-render only

Starts `specialist serve` on 127.0.0.1 with the default model and 4 routed tasks in a fresh temporary home,
sends traffic only there, bounded in count and time, and stops it (and any training job) at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ValidationError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from reliability import bad_input, faults, home, load  # noqa: E402
from reliability.report import render  # noqa: E402
from reliability.results import Figures, ScenarioError, load_figures  # noqa: E402
from reliability.results.figures import RunArgs, Setup  # noqa: E402
from service.live import REPO, LiveServer  # noqa: E402

PARTS = ("quick", "bad-input", "security", "load", "faults", "soak")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m reliability",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--out", type=Path, default=REPO / "RELIABILITY.md", help="report (default: RELIABILITY.md)")
    p.add_argument("--json", type=Path, default=REPO / "docs" / "results" / "reliability.json", help="figures as JSON")
    p.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts: {', '.join(PARTS)}")
    p.add_argument("--clients", type=int, default=32, help="load clients (default 32)")
    p.add_argument("--load-seconds", type=float, default=60, help="load duration (default 60)")
    p.add_argument("--warmup-seconds", type=float, default=10, help="load warm-up, not counted (default 10)")
    p.add_argument("--fault-seconds", type=float, default=20, help="traffic during each fault (default 20)")
    p.add_argument("--fault-clients", type=int, default=16, help="clients during faults (default 16)")
    p.add_argument("--soak-seconds", type=float, default=600, help="soak duration (default 600)")
    p.add_argument("--soak-clients", type=int, default=8, help="soak clients (default 8)")
    p.add_argument("--max-new-tokens", type=int, default=16, help="tokens per load request (default 16)")
    p.add_argument(
        "--fuzz-examples", type=int, default=40, help="schemathesis examples per operation, mode and token setting"
    )
    p.add_argument(
        "--fingerprint-inputs", type=int, default=2, help="inputs per task (fingerprinted; the load draws from them)"
    )
    p.add_argument(
        "--adapter-scale",
        type=float,
        default=8.0,
        help="scale of the random LoRA B weights: large enough that every adapter answers in its own way",
    )
    p.add_argument("--threads", type=int, help="torch threads of the service (default: the service's own default)")
    p.add_argument("--work", type=Path, help="work folder (default: a temp dir, removed unless --keep)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (home, logs, adapters)")
    p.add_argument("--notes", type=Path, help="JSON {goal id: cause} explaining shortfalls found earlier")
    p.add_argument(
        "--from-json",
        type=Path,
        help="run nothing: render the report (--out) again from stored figures (a --json file)",
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    notes = json.loads(args.notes.read_text()) if args.notes else {}
    if args.from_json:
        args.out.write_text(render(load_figures(args.from_json), notes))
        print(f"wrote {args.out} from {args.from_json}")
        return 0
    parts = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = parts - set(PARTS)
    if unknown:
        print(f"error: unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="reliability-"))
    work.mkdir(parents=True, exist_ok=True)
    figures: dict = {  # part -> its typed result, as the run goes; one `Figures` at the end
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} ({os.cpu_count()} CPU cores, {platform.platform()})",
        "parts": sorted(parts),
    }
    hidden = ("out", "json", "work", "notes", "keep", "only", "from_json")
    shown = {k: v for k, v in vars(args).items() if k not in hidden}
    shown["json"] = str(args.json)
    run_args = RunArgs(**shown)  # typed now, not after a 25-minute run
    server = None

    def step(name: str, fn, *a, **kw):
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
        started = time.perf_counter()
        try:
            result = fn(*a, **kw)
        except Exception as e:  # noqa: BLE001 - a failed scenario is reported, the others still run
            traceback.print_exc()
            result = ScenarioError(error=f"{type(e).__name__}: {e}")
        print(
            f"[{time.strftime('%H:%M:%S')}] {name}: {time.perf_counter() - started:.0f} s  {_brief(result)}", flush=True
        )
        return result

    try:
        if "quick" in parts:
            figures["quick"] = step(
                "quick part (pytest tests/reliability)", bad_input.run_quick, work, args.fuzz_examples
            )
        if parts - {"quick"}:
            made = step("adapters and registry", home.build_home, work, args.adapter_scale)
            serve_args = ["--num-threads", str(args.threads)] if args.threads else []
            serve_args += ["--job-gate-policy", str(_permissive_policy(work)), "--job-checkpoint-every", "5"]
            token = secrets.token_urlsafe(24)
            # Offline, quiet and untracked: the server sees only 127.0.0.1 and the files here.
            offline = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "BENTOML_DO_NOT_TRACK": "True"}
            server = LiveServer(work / "home", token, serve_args, env=offline, log_dir=work)
            start_s = step("start the service", server.start)
            inputs = home.task_inputs(args.fingerprint_inputs)
            prompts = home.served_prompts(work / "home")
            fp = step("fingerprints", home.make_fingerprints, server, inputs, prompts, args.max_new_tokens)
            distinct, total = fp.distinguishable()
            figures["setup"] = Setup(
                tasks=home.TASKS,
                serve_args=serve_args,
                start_s=round(start_s, 1) if isinstance(start_s, float) else start_s,
                fingerprint_prompts=total,
                distinguishable=distinct,
                base_model="SmolLM2-135M-Instruct",
            )
            if "bad-input" in parts:
                figures["bad_input_live"] = step("bad input, live", bad_input.run_bad_input_live, server)
            if "security" in parts:
                figures["security_live"] = step("security, live", bad_input.run_security_live, server)
            if "load" in parts:
                figures["load"] = step(
                    "load",
                    load.run_load,
                    server,
                    inputs,
                    fp,
                    args.clients,
                    args.load_seconds,
                    args.max_new_tokens,
                    args.warmup_seconds,
                )
            if "faults" in parts:
                f = figures["faults"] = {}  # fault -> result; made a FaultsResults with the rest
                f["promotion_during_load"] = step(
                    "fault: promotion + rollback under load",
                    faults.fault_promotion_during_load,
                    server,
                    inputs,
                    fp,
                    args.fault_clients,
                    args.fault_seconds,
                    args.max_new_tokens,
                )
                f["kill_training"] = step(
                    "fault: kill the training process",
                    faults.fault_kill_training,
                    server,
                    inputs,
                    fp,
                    args.max_new_tokens,
                )
                f["corrupt_skip_gate"] = step(
                    "fault: corrupt adapter with --skip-gate",
                    faults.fault_corrupt_skip_gate,
                    server,
                    made,
                    inputs,
                    fp,
                    work,
                    args.max_new_tokens,
                )
                f["kill_restart"] = step(
                    "fault: kill + restart the service",
                    faults.fault_kill_restart,
                    server,
                    inputs,
                    fp,
                    max(4, args.fault_clients // 2),
                    args.fault_seconds,
                    args.max_new_tokens,
                )
                f["unwritable_registry"] = step(
                    "fault: read-only / full registry home",
                    faults.fault_unwritable_registry,
                    server,
                    made,
                    inputs,
                    fp,
                    args.max_new_tokens,
                )
            if "soak" in parts:
                figures["soak"] = step(
                    "soak",
                    load.run_soak,
                    server,
                    inputs,
                    fp,
                    args.soak_clients,
                    args.soak_seconds,
                    args.max_new_tokens,
                )
    finally:
        if server is not None:
            figures["shutdown"] = step("stop the service", load.stop_server, server)
        figures["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        try:
            result = Figures(args=run_args, **figures)
        except ValidationError:  # never lose a run's figures to a type mismatch: write them as they are, then fail
            args.json.write_text(json.dumps({"args": shown, **figures}, indent=2, default=_plain) + "\n")
            raise
        args.json.write_text(json.dumps(result.to_json(), indent=2, default=str) + "\n")
        args.out.write_text(render(result, notes))
        print(f"wrote {args.out} and {args.json}" + (f"; work folder {work}" if args.keep or args.work else ""))
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _permissive_policy(work: Path) -> Path:
    """Jobs here exist to be running (and killed); the gate may pass anything they produce."""
    path = work / "job-gate.yaml"
    path.write_text("min_gain_over_base: -100\nmin_gain_over_champion: -100\n")
    return path


def _plain(value):
    return value.model_dump() if isinstance(value, BaseModel) else str(value)


def _brief(result) -> str:
    result = result.model_dump() if isinstance(result, BaseModel) else None
    if not isinstance(result, dict):
        return ""
    keys = (
        "error",
        "distinct_cases",
        "server_errors",
        "cases",
        "p50_s",
        "p99_s",
        "requests",
        "http_errors",
        "transport_errors",
        "wrong_adapter",
        "status",
        "rss_start_mb",
        "rss_end_mb",
        "failed_requests",
    )
    return json.dumps({k: result[k] for k in keys if k in result}, default=str)[:300]


if __name__ == "__main__":
    sys.exit(main())
