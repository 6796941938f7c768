"""`specialist registry`, `serve`, `tgi-config` and `request`: promote adapters and serve them."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from cli.options import POSITIONAL, add_model_flags, model_from_args
from specialist.base_models import DEFAULT_BASE_MODEL
from specialist.config import StrictModel
from specialist.errors import SpecialistError

TGI_MODEL_MOUNT = "/model"  # where the engine's container sees a mounted base model


def add_parsers(sub) -> None:
    _add_registry_parser(sub)
    _add_serve_parsers(sub)
    _add_request_parser(sub)


class RegistryAdd(StrictModel):
    adapter: Path = Field(
        description="adapter directory (with manifest.json and gate_decision.json)", json_schema_extra=POSITIONAL
    )
    task: str = Field(description="name to serve it under (letters, digits, '.', '_', '-')")
    skip_gate: bool = Field(False, description="operators only: register without a passing gate decision (recorded)")
    promote: bool = Field(True, description="route to it (--no-promote: register only)")


class RegistryList(StrictModel):
    history: bool = Field(False, description="also print the promotion history")


class RegistryPromote(StrictModel):
    task: str = Field(description="served task name", json_schema_extra=POSITIONAL)
    version: int = Field(ge=1, description="version number to route to", json_schema_extra=POSITIONAL)


class RegistryTask(StrictModel):
    task: str = Field(description="served task name", json_schema_extra=POSITIONAL)


def _add_registry_parser(sub) -> None:
    reg = sub.add_parser(
        "registry",
        help="promoted adapters per task: add, list, promote, rollback, remove",
        description="The registry under $SPECIALIST_HOME/registry holds versioned adapters per task, the routing table "
        "(task -> champion version) and the promotion history. Only adapters with a passing gate decision can be routed.",
    )
    reg_sub = reg.add_subparsers(dest="registry_command", required=True, metavar="ACTION")
    actions = (
        ("add", RegistryAdd, "register an adapter as the task's next version and route to it", _registry_add),
        ("list", RegistryList, "tasks, versions, champions and the promotion history", _registry_list),
        ("promote", RegistryPromote, "route a task to one of its versions", _registry_promote),
        ("rollback", RegistryTask, "route a task back to its previous champion", _registry_rollback),
        ("remove", RegistryTask, "stop routing a task (its versions stay on disk)", _registry_remove),
    )
    for name, options, help_text, handler in actions:
        action = reg_sub.add_parser(name, help=help_text)
        add_model_flags(action, options, required=("task",), config_file=False)
        action.set_defaults(
            handler=lambda args, options=options, handler=handler: handler(model_from_args(options, args))
        )


def _registry_add(args: RegistryAdd) -> int:
    from specialist.adapters import Registry

    v = Registry().add(args.adapter, args.task, skip_gate=args.skip_gate, promote=args.promote)
    print(
        f"{v.task} v{v.version}: {v.path}{' (skip-gate)' if v.skip_gate else ''}{'' if args.promote else ' (not routed)'}"
    )
    return 0


def _registry_list(args: RegistryList) -> int:
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


def _registry_promote(args: RegistryPromote) -> int:
    from specialist.adapters import Registry

    v = Registry().promote(args.task, args.version)
    print(f"{v.task} -> v{v.version}")
    return 0


def _registry_rollback(args: RegistryTask) -> int:
    from specialist.adapters import Registry

    v = Registry().rollback(args.task)
    print(f"{v.task} -> v{v.version} (rolled back)")
    return 0


def _registry_remove(args: RegistryTask) -> int:
    from specialist.adapters import Registry

    Registry().remove(args.task)
    print(f"{args.task}: no longer routed")
    return 0


class Listen(StrictModel):
    """Where to listen."""

    host: str = Field("127.0.0.1", description="interface to bind")
    port: int = Field(3000, ge=1, le=65535, description="port")


class TgiEngine(StrictModel):
    """The TGI engine to configure."""

    model_id: str = Field(
        DEFAULT_BASE_MODEL,
        description=f"base model the engine loads: {DEFAULT_BASE_MODEL} (its converted weights are mounted), a "
        "local HF model folder (mounted), or a hub id (passed on)",
    )
    port: int = Field(8080, ge=1, le=65535, description="host port the engine's container publishes")


def _add_serve_parsers(sub) -> None:
    from service.config import ServeConfig

    serve = sub.add_parser(
        "serve",
        help="serve every routed adapter behind one API (wraps `bentoml serve`)",
        description="Start the BentoML service: native /predict and /tasks, OpenAI /v1/*, TGI /generate and "
        "/generate_stream, admin /admin/* (bearer $SPECIALIST_ADMIN_TOKEN), /livez, /readyz, /metrics. Routes come "
        "from the registry in $SPECIALIST_HOME and hot-swap on promotion. Generation runs in process (--backend "
        "local), on vLLM engines (--backend vllm: one started here from `make vllm`'s .venv-vllm, or --vllm-urls "
        "engines elsewhere, which fetch adapters from /artifacts), or on TGI engines. Stop it with Ctrl-C or SIGTERM.",
        epilog="example: SPECIALIST_ADMIN_TOKEN=change-me specialist serve --port 3000",
    )
    add_model_flags(serve, Listen, config_file=False)
    add_model_flags(serve, ServeConfig)
    serve.set_defaults(handler=_serve)

    tgi = sub.add_parser(
        "tgi-config",
        help="print the LORA_ADAPTERS setting (and a docker run line) for a TGI engine serving the routed adapters",
    )
    add_model_flags(tgi, TgiEngine, config_file=False)
    tgi.set_defaults(handler=lambda args: _tgi_config(model_from_args(TgiEngine, args, "tgi-config options")))


def _serve(args: argparse.Namespace) -> int:
    import service
    from service.config import CONFIG_ENV, ServeConfig

    listen = model_from_args(Listen, args, "serve options", config_file=False)
    config = model_from_args(ServeConfig, args, "serve options")
    env = dict(os.environ, **{CONFIG_ENV: config.model_dump_json()})
    if config.backend == "tgi":
        # huggingface_hub's InferenceClient refuses every URL, even localhost, in offline mode.
        env.pop("HF_HUB_OFFLINE", None)
    else:
        env["HF_HUB_OFFLINE"] = "1"
    if config.backend == "vllm" and not config.vllm_urls:
        from service.vllm.process import vllm_python

        vllm_python(config)  # no vLLM to start: one line now, not a worker's traceback after bentoml starts
    project = Path(service.__file__).resolve().parent.parent
    cmd = [
        "bentoml",
        "serve",
        "service.bento:SpecialistService",
        "--host",
        listen.host,
        "--port",
        str(listen.port),
        "--working-dir",
        str(project),
    ]
    bentoml = Path(sys.executable).parent / "bentoml"
    cmd[0] = str(bentoml) if bentoml.exists() else "bentoml"
    print(
        f"serving on http://{listen.host}:{listen.port} ({config.backend} backend, registry in {_home()})", flush=True
    )
    os.execvpe(cmd[0], cmd, env)  # replace this process: SIGTERM reaches bentoml directly


def _home() -> Path:
    from specialist.paths import specialist_home

    return specialist_home()


def _tgi_config(args: TgiEngine) -> int:
    from specialist.adapters import Registry

    routes = Registry().routes()
    if not routes:
        raise SpecialistError("no routed adapters", "register and promote adapters first (`specialist registry add`)")
    model_dir, model_id = _tgi_model(args.model_id, routes)
    # Inside the container the registry is mounted at /adapters.
    setting = ",".join(
        f"{task}=/adapters/{v.path.relative_to(_home() / 'registry' / 'adapters')}" for task, v in routes.items()
    )
    # A mounted model: the engine loads exactly those weights and never asks the hub.
    model = f"-v {model_dir}:{TGI_MODEL_MOUNT}:ro -e HF_HUB_OFFLINE=1 " if model_dir else ""
    print(f"LORA_ADAPTERS={setting}")
    print(
        f"docker run --gpus all -p {args.port}:80 -v {_home() / 'registry' / 'adapters'}:/adapters:ro {model}"
        f"-e LORA_ADAPTERS={setting} ghcr.io/huggingface/text-generation-inference:latest --model-id {model_id}"
    )
    return 0


def _tgi_model(spec: str, routes: dict) -> tuple[Path | None, str]:
    """(folder to mount or None, the engine's --model-id) for `spec`, refused when the routed adapters were
    trained on other weights: TGI would serve them on that other model without a word."""
    from specialist.base_models import prepared_default, resolve_base_model

    if spec == DEFAULT_BASE_MODEL or Path(spec).expanduser().is_dir():
        base = prepared_default() if spec == DEFAULT_BASE_MODEL else resolve_base_model(spec)
        mount, model_id, sha256 = base.path, TGI_MODEL_MOUNT, base.content_sha256
    else:  # a hub id: its weights are not here to hash, so the adapters must name it
        mount, model_id, sha256 = None, spec, None
    other = sorted(
        f"{task} ({v.base_model})"
        for task, v in routes.items()
        if (v.base_sha256 != sha256 if sha256 else v.base_model != spec)
    )
    if other:
        raise SpecialistError(
            f"the routed adapters {', '.join(other)} were not trained on {spec}: a TGI engine would serve them on "
            "other weights",
            f"pass --model-id with their base model (default {DEFAULT_BASE_MODEL}: the converted weights are mounted)",
        )
    return mount, model_id


class RequestOptions(StrictModel):
    server: str = Field(description="service URL, e.g. http://127.0.0.1:3000")
    task: str = Field(description="name to serve the specialist under")
    superni_task: str | None = Field(None, description="a task file in the server's task-data directory")
    data: Path | None = Field(None, description="JSON or JSONL file of {input, output|outputs} records (uploaded)")
    definition: str | None = Field(None, description="the task instruction (required with --data)")
    held_out: int = Field(100, ge=1, description="evaluation instances taken from --data")
    instances_per_task: int | Literal["all"] = Field(64, description="training instances, or 'all'")
    generalist: str = Field("auto", description="auto (decide by evidence), none, or a ratio like 1.0")
    max_steps: int | None = Field(None, ge=1, description="training steps per candidate (exclusive with --epochs)")
    epochs: float | None = Field(None, gt=0, description="epochs per candidate")
    eval_instances: int | None = Field(None, ge=1, description="score candidates on the first N held-out instances")
    token: str | None = Field(None, description="admin token (default: $SPECIALIST_ADMIN_TOKEN)")
    wait: bool = Field(False, description="follow the job until it ends")

    @field_validator("instances_per_task")
    @classmethod
    def _at_least_one(cls, value):
        if value != "all" and value < 1:
            raise ValueError(f"{value} is not a count of instances (>= 1) or 'all'")
        return value

    @field_validator("generalist")
    @classmethod
    def _generalist(cls, value: str) -> str:
        if value not in ("auto", "none"):
            try:
                ratio = float(value)
            except ValueError:
                raise ValueError(f"{value!r} is not auto, none or a ratio like 1.0") from None
            if not 0 <= ratio <= 100:
                raise ValueError(f"ratio {ratio:g} is out of range 0..100")
        return value

    @model_validator(mode="after")
    def _one_source_one_length(self):
        if (self.superni_task is None) == (self.data is None):
            raise ValueError("give exactly one of --superni-task and --data")
        if self.data is not None and not self.definition:
            raise ValueError("--data needs --definition (the task instruction the prompts will use)")
        if self.max_steps is not None and self.epochs is not None:
            raise ValueError("give --max-steps or --epochs, not both")
        return self


def _add_request_parser(sub) -> None:
    req = sub.add_parser(
        "request",
        help="ask a running service for a new specialist (train -> evaluate -> gate -> serve) and follow the job",
        description="Submits POST /specialists to the server (admin token from --token or $SPECIALIST_ADMIN_TOKEN). "
        "With --wait, shows the job's events as they arrive (one line each: stages, candidates, checkpoints, "
        "training samples, evaluation results, the decision), a progress bar and the final decision; "
        "exit 0 when promoted, 1 otherwise.",
        epilog="example: specialist request --server http://127.0.0.1:3000 --task sst2 "
        "--superni-task task363_sst2_polarity_classification --instances-per-task 32 --max-steps 40 --wait",
    )
    add_model_flags(req, RequestOptions, required=("server", "task"))
    req.set_defaults(handler=lambda args: _request(model_from_args(RequestOptions, args, "request options")))


def _request(args: RequestOptions) -> int:
    from service.client import SpecialistClient

    client = SpecialistClient(args.server, args.token or os.environ.get("SPECIALIST_ADMIN_TOKEN"))
    body: dict = {"task": args.task, "instances_per_task": args.instances_per_task}
    if args.superni_task:
        body["superni_task"] = args.superni_task
    else:
        body |= {"upload_id": client.upload(args.data), "definition": args.definition, "held_out": args.held_out}
    body["generalist"] = args.generalist if args.generalist in ("auto", "none") else {"ratio": float(args.generalist)}
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
