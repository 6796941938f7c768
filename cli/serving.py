"""`specialist registry`, `serve`, `tgi-config` and `request`: promote adapters and serve them."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cli.options import add_model_flags, count, count_or_all, model_from_args
from specialist.errors import SpecialistError


def add_parsers(sub) -> None:
    _add_registry_parser(sub)
    _add_serve_parsers(sub)
    _add_request_parser(sub)


def _add_registry_parser(sub) -> None:
    reg = sub.add_parser(
        "registry",
        help="promoted adapters per task: add, list, promote, rollback, remove",
        description="The registry under $SPECIALIST_HOME/registry holds versioned adapters per task, the routing table "
        "(task -> champion version) and the promotion history. Only adapters with a passing gate decision can be routed.",
    )
    reg_sub = reg.add_subparsers(dest="registry_command", required=True, metavar="ACTION")
    add = reg_sub.add_parser("add", help="register an adapter as the task's next version and route to it")
    add.add_argument("adapter", type=Path, help="adapter directory (with manifest.json and gate_decision.json)")
    add.add_argument("--task", required=True, help="name to serve it under (letters, digits, '.', '_', '-')")
    add.add_argument(
        "--skip-gate", action="store_true", help="operators only: register without a passing gate decision (recorded)"
    )
    add.add_argument("--no-promote", dest="promote", action="store_false", help="register without routing to it")
    add.set_defaults(handler=_registry_add)
    lst = reg_sub.add_parser("list", help="tasks, versions, champions and the promotion history")
    lst.add_argument("--history", action="store_true", help="also print the promotion history")
    lst.set_defaults(handler=_registry_list)
    promote = reg_sub.add_parser("promote", help="route a task to one of its versions")
    promote.add_argument("task")
    promote.add_argument("version", type=count(1))
    promote.set_defaults(handler=_registry_promote)
    rollback = reg_sub.add_parser("rollback", help="route a task back to its previous champion")
    rollback.add_argument("task")
    rollback.set_defaults(handler=_registry_rollback)
    remove = reg_sub.add_parser("remove", help="stop routing a task (its versions stay on disk)")
    remove.add_argument("task")
    remove.set_defaults(handler=_registry_remove)


def _registry_add(args: argparse.Namespace) -> int:
    from specialist.adapters import Registry

    v = Registry().add(args.adapter, args.task, skip_gate=args.skip_gate, promote=args.promote)
    print(
        f"{v.task} v{v.version}: {v.path}{' (skip-gate)' if v.skip_gate else ''}{'' if args.promote else ' (not routed)'}"
    )
    return 0


def _registry_list(args: argparse.Namespace) -> int:
    from specialist.adapters import Registry

    registry = Registry()
    routes = registry.routes()
    versions = registry.versions()
    if not versions:
        print(f"the registry at {registry.root} is empty (add one with `specialist registry add DIR --task NAME`)")
    for v in versions:
        champion = "*" if routes.get(v.task) and routes[v.task].version == v.version else " "
        gate = "skip-gate" if v.skip_gate else ("gate passed" if v.gate_passed else "gate failed")
        print(f"{champion} {v.task}\tv{v.version}\t{gate}\t{v.base_model}\t{v.created_at}\t{v.path}")
    if args.history:
        for h in registry.history():
            print(
                f"{h['at']}  {h['task']}  {h['action']}  v{h['from_version']} -> v{h['to_version']}  by {h['actor']}: {h['reason']}"
            )
    return 0


def _registry_promote(args: argparse.Namespace) -> int:
    from specialist.adapters import Registry

    v = Registry().promote(args.task, args.version)
    print(f"{v.task} -> v{v.version}")
    return 0


def _registry_rollback(args: argparse.Namespace) -> int:
    from specialist.adapters import Registry

    v = Registry().rollback(args.task)
    print(f"{v.task} -> v{v.version} (rolled back)")
    return 0


def _registry_remove(args: argparse.Namespace) -> int:
    from specialist.adapters import Registry

    Registry().remove(args.task)
    print(f"{args.task}: no longer routed")
    return 0


def _add_serve_parsers(sub) -> None:
    from service.config import ServeConfig

    serve = sub.add_parser(
        "serve",
        help="serve every routed adapter behind one API (wraps `bentoml serve`)",
        description="Start the BentoML service: native /predict and /tasks, OpenAI /v1/*, TGI /generate and "
        "/generate_stream, admin /admin/* (bearer $SPECIALIST_ADMIN_TOKEN), /livez, /readyz, /metrics. Routes come "
        "from the registry in $SPECIALIST_HOME and hot-swap on promotion. Stop it with Ctrl-C or SIGTERM.",
        epilog="example: SPECIALIST_ADMIN_TOKEN=change-me specialist serve --port 3000",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=count(1, 65535), default=3000, help="port (default: 3000)")
    add_model_flags(serve, ServeConfig)
    serve.set_defaults(handler=_serve)

    tgi = sub.add_parser(
        "tgi-config",
        help="print the LORA_ADAPTERS setting (and a docker run line) for a TGI engine serving the routed adapters",
    )
    tgi.add_argument("--model-id", default="HuggingFaceTB/SmolLM2-135M-Instruct", help="base model id the engine loads")
    tgi.add_argument("--port", type=count(1, 65535), default=8080)
    tgi.set_defaults(handler=_tgi_config)


def _serve(args: argparse.Namespace) -> int:
    import service
    from service.config import CONFIG_ENV, ServeConfig

    config = model_from_args(ServeConfig, args, "serve options")
    env = dict(os.environ, **{CONFIG_ENV: config.model_dump_json()})
    if config.backend == "tgi":
        # huggingface_hub's InferenceClient refuses every URL, even localhost, in offline mode.
        env.pop("HF_HUB_OFFLINE", None)
    else:
        env["HF_HUB_OFFLINE"] = "1"
    project = Path(service.__file__).resolve().parent.parent
    cmd = [
        "bentoml",
        "serve",
        "service.bento:SpecialistService",
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--working-dir",
        str(project),
    ]
    bentoml = Path(sys.executable).parent / "bentoml"
    cmd[0] = str(bentoml) if bentoml.exists() else "bentoml"
    print(f"serving on http://{args.host}:{args.port} ({config.backend} backend, registry in {_home()})", flush=True)
    os.execvpe(cmd[0], cmd, env)  # replace this process: SIGTERM reaches bentoml directly


def _home() -> Path:
    from specialist.paths import specialist_home

    return specialist_home()


def _tgi_config(args: argparse.Namespace) -> int:
    from specialist.adapters import Registry

    routes = Registry().routes()
    if not routes:
        raise SpecialistError("no routed adapters", "register and promote adapters first (`specialist registry add`)")
    # Inside the container the registry is mounted at /adapters.
    setting = ",".join(
        f"{task}=/adapters/{v.path.relative_to(_home() / 'registry' / 'adapters')}" for task, v in routes.items()
    )
    print(f"LORA_ADAPTERS={setting}")
    print(
        f"docker run --gpus all -p {args.port}:80 -v {_home() / 'registry' / 'adapters'}:/adapters:ro "
        f"-e LORA_ADAPTERS={setting} ghcr.io/huggingface/text-generation-inference:latest --model-id {args.model_id}"
    )
    return 0


def _add_request_parser(sub) -> None:
    req = sub.add_parser(
        "request",
        help="ask a running service for a new specialist (train -> evaluate -> gate -> serve) and follow the job",
        description="Submits POST /specialists to the server (admin token from --token or $SPECIALIST_ADMIN_TOKEN). "
        "With --wait, shows the job's progress and its final decision; exit 0 when promoted, 1 otherwise.",
        epilog="example: specialist request --server http://127.0.0.1:3000 --task sst2 "
        "--superni-task task363_sst2_polarity_classification --instances-per-task 32 --max-steps 40 --wait",
    )
    req.add_argument("--server", required=True, help="service URL, e.g. http://127.0.0.1:3000")
    req.add_argument("--task", required=True, help="name to serve the specialist under")
    source = req.add_mutually_exclusive_group(required=True)
    source.add_argument("--superni-task", help="a task file in the server's task-data directory")
    source.add_argument("--data", type=Path, help="JSON or JSONL file of {input, output|outputs} records (uploaded)")
    req.add_argument("--definition", help="the task instruction (required with --data)")
    req.add_argument(
        "--held-out", type=count(1), default=100, help="evaluation instances taken from --data (default 100)"
    )
    req.add_argument(
        "--instances-per-task", type=count_or_all, default=64, help="training instances, or 'all' (default 64)"
    )
    req.add_argument(
        "--generalist",
        type=_generalist_choice,
        default="auto",
        help="auto (decide by evidence), none, or a ratio like 1.0",
    )
    length = req.add_mutually_exclusive_group()
    length.add_argument("--max-steps", type=count(1), help="training steps per candidate")
    length.add_argument("--epochs", type=float, help="epochs per candidate")
    req.add_argument("--eval-instances", type=count(1), help="score candidates on the first N held-out instances")
    req.add_argument("--token", help="admin token (default: $SPECIALIST_ADMIN_TOKEN)")
    req.add_argument("--wait", action="store_true", help="follow the job until it ends")
    req.set_defaults(handler=_request)


def _generalist_choice(text: str):
    if text in ("auto", "none"):
        return text
    try:
        ratio = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not auto, none or a ratio like 1.0") from None
    if not 0 <= ratio <= 100:
        raise argparse.ArgumentTypeError(f"ratio {ratio} is out of range 0..100")
    return {"ratio": ratio}


def _request(args: argparse.Namespace) -> int:
    from service.client import SpecialistClient

    client = SpecialistClient(args.server, args.token or os.environ.get("SPECIALIST_ADMIN_TOKEN"))
    body: dict = {"task": args.task, "instances_per_task": args.instances_per_task}
    if args.superni_task:
        body["superni_task"] = args.superni_task
    else:
        if not args.definition:
            raise SpecialistError("--data needs --definition", "pass the task instruction the prompts will use")
        body |= {"upload_id": client.upload(args.data), "definition": args.definition, "held_out": args.held_out}
    body["generalist"] = args.generalist
    body["budget"] = (
        {"max_steps": args.max_steps} if args.max_steps else ({"epochs": args.epochs} if args.epochs else {})
    )
    if args.eval_instances:
        body["gate"] = {"eval_instances": args.eval_instances}
    job_id = client.submit(body)
    print(f"job {job_id} queued for task {args.task}")
    if not args.wait:
        return 0
    job = client.wait(job_id, progress=True)
    print(client.describe(job))
    return 0 if job["status"] == "promoted" else 1
