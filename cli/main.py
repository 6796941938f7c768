"""`specialist`: turn a base LLM into task specialists (LoRA adapters).

Every user error ends as one line on stderr and a non-zero exit; tracebacks are for bugs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Models load from local files; the hub is used only when the user opts in with HF_HUB_OFFLINE=0.
# Must be set before huggingface_hub is imported (it reads the variable once).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from cli.options import add_model_flags, model_from_args  # noqa: E402
from specialist.errors import SpecialistError  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    from specialist.config import TrainConfig

    parser = argparse.ArgumentParser(
        prog="specialist",
        description="Specialist Factory: train LoRA specialists for NLP tasks, mixing in generalist data when it helps.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser(
        "train",
        help="train one LoRA specialist on SuperNI task data (+ optional generalist data)",
        description="Train a LoRA adapter on task instances (after the held-out first 100 of each task) mixed with "
        "generalist records. Writes a PEFT adapter directory with manifest.json to --out.",
        epilog="example: specialist train --task task363_sst2_polarity_classification --instances-per-task 64 "
        "--generalist-ratio 1.0 --epochs 2 --out runs/sst2",
    )
    add_model_flags(train, TrainConfig, required=("out",))
    train.set_defaults(handler=_train)

    _add_eval_parsers(sub)
    _add_gate_parser(sub)
    _add_factory_parsers(sub)

    _add_registry_parser(sub)
    _add_serve_parsers(sub)
    _add_request_parser(sub)

    models = sub.add_parser("models", help="prepare and list base models")
    models_sub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    prepare = models_sub.add_parser("prepare", help="convert the packaged SmolLM2-135M-Instruct GGUF into an HF directory (once)")
    prepare.set_defaults(handler=_models_prepare)
    listing = models_sub.add_parser("list", help="show the base models in the models cache")
    listing.set_defaults(handler=_models_list)

    tasks = sub.add_parser("tasks", help="list SuperNI tasks and categories in a task-data folder")
    tasks_sub = tasks.add_subparsers(dest="tasks_command", required=True, metavar="ACTION")
    tasks_list = tasks_sub.add_parser("list", help="task names with their categories")
    tasks_list.add_argument("--task-data", help="folder of SuperNI task files (default: $SPECIALIST_TASK_DATA or ../shared/data/superni/tasks)")
    tasks_list.add_argument("--category", help="only tasks of this category")
    tasks_list.set_defaults(handler=_tasks_list)
    categories = tasks_sub.add_parser("categories", help="categories with their task counts")
    categories.add_argument("--task-data", help="folder of SuperNI task files")
    categories.set_defaults(handler=_tasks_categories)
    return parser


def _count(low: int, high: int | None = None):
    """argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range {low}..{high if high is not None else ''}")
        return value

    return parse


def _add_eval_parsers(sub) -> None:
    from eval.benchmarks import METRICS
    from specialist.superni import HELD_OUT_INSTANCES

    ev = sub.add_parser(
        "eval",
        help="score adapters and the base model on held-out task instances (or `eval score` prediction files)",
        description="Evaluate adapters (and the bare base model) on SuperNI held-out instances or a custom JSONL "
        "benchmark, all in one pass with mixed-adapter batches. Writes scores.json, predictions.jsonl (+ official "
        "predictions_<model>.jsonl and references.jsonl), report.md and chart.png to --out.",
        epilog="examples: specialist eval --adapter runs/sst2 --base --task task363_sst2_polarity_classification --out runs/eval | "
        "specialist eval score --predictions P.jsonl --references R.jsonl",
    )
    ev.add_argument("--adapter", action="append", default=[], metavar="[NAME=]DIR", help="adapter to score (repeatable); name defaults to the folder name")
    ev.add_argument("--base", action="store_true", help="also score the bare base model")
    ev.add_argument("--base-model", default=None, help="base model (default: the one in the first adapter's manifest, else the packaged default)")
    ev.add_argument("--task-data", type=Path, default=None, help="folder of SuperNI task files (default: $SPECIALIST_TASK_DATA or ../shared/data/superni/tasks)")
    ev.add_argument("--task", action="append", default=[], help="SuperNI task (repeatable)")
    ev.add_argument("--category", action="append", default=[], help="every task of this category (repeatable)")
    ev.add_argument("--task-list", type=Path, help="file of task names, one per line")
    ev.add_argument("--benchmark", type=Path, help="custom JSONL benchmark of {id, input, references}")
    ev.add_argument("--benchmark-name", help="task name of the custom benchmark (default: the file's stem)")
    ev.add_argument("--definition", help="instruction for the custom benchmark's prompts")
    ev.add_argument("--metric", choices=METRICS, help="primary metric (default: exact match for label tasks, else ROUGE-L)")
    ev.add_argument("--eval-instances", type=_count(1, HELD_OUT_INSTANCES), default=None,
                    help=f"use only the first N of each task's {HELD_OUT_INSTANCES} held-out instances")  # fmt: skip
    ev.add_argument("--batch-size", type=_count(1, 1024), default=16, help="generation batch size (default: 16)")
    ev.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    ev.add_argument("--out", type=Path, help="output folder (required unless `score`)")
    ev.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    ev.set_defaults(handler=_eval)
    ev_sub = ev.add_subparsers(dest="eval_command", metavar="ACTION")
    sc = ev_sub.add_parser("score", help="official SuperNI scoring of prediction/reference JSONL files")
    sc.add_argument("--predictions", type=Path, required=True, help="JSONL of {id, prediction}")
    sc.add_argument("--references", type=Path, required=True, help="JSONL of {id, references, task_id, task_category, track}")
    sc.add_argument("--out", type=Path, help="also write the results as JSON here")
    sc.set_defaults(handler=_eval_score)


def _add_gate_parser(sub) -> None:
    gate = sub.add_parser(
        "gate",
        help="decide whether an adapter may be promoted (exit 0 pass, 1 fail, 2 usage error)",
        description="Evaluate the candidate with the base model (and the champion) in one pass, run every check of "
        "the policy, print them as a table and save gate_decision.json beside the adapter.",
        epilog="example: specialist gate --candidate runs/sst2 --policy configs/gate.yaml",
    )
    gate.add_argument("--candidate", type=Path, required=True, help="adapter directory to judge")
    gate.add_argument("--policy", type=Path, help="gate policy YAML (default: must beat the base model)")
    gate.add_argument("--champion", type=Path, help="the task's current champion adapter")
    gate.add_argument("--base-model", default=None, help="base model (default: the candidate manifest's)")
    gate.add_argument("--task-data", type=Path, default=None, help="folder of SuperNI task files")
    gate.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    gate.set_defaults(handler=_gate)


def _add_factory_parsers(sub) -> None:
    from factory.build import BuildConfig
    from factory.experiment import ExperimentConfig

    build = sub.add_parser(
        "build",
        help="train one candidate per generalist setting, evaluate together, gate each, pick the best",
        description="Decide generalist-augmented vs specialist-only by evidence: --out holds candidates/ and decision.json.",
        epilog="example: specialist build --task task363_sst2_polarity_classification --instances-per-task 64 "
        "--candidates 0,1.0 --epochs 2 --out runs/sst2-build",
    )
    add_model_flags(build, BuildConfig, required=("out",), exclude=("generalist_ratio", "generalist_count", "generalist_filter", "resume"))
    build.set_defaults(handler=_build)

    exp = sub.add_parser(
        "experiment",
        help="the paper's grid: score vs instances per task, with and without generalist data",
        description="Train the grid, evaluate every adapter with the base model in one pass, and write results.csv, "
        "results.md and curve.png to --out.",
        epilog="example: specialist experiment --task task363_sst2_polarity_classification --instances-per-task 8,32,128 "
        "--generalist-ratios 0,1 --seeds 1 --epochs 2 --out runs/exp",
    )
    add_model_flags(exp, ExperimentConfig, required=("out",), exclude=("generalist_ratio", "generalist_count", "seed", "resume"))
    exp.set_defaults(handler=_experiment)


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
    add.add_argument("--skip-gate", action="store_true", help="operators only: register without a passing gate decision (recorded)")
    add.add_argument("--no-promote", dest="promote", action="store_false", help="register without routing to it")
    add.set_defaults(handler=_registry_add)
    lst = reg_sub.add_parser("list", help="tasks, versions, champions and the promotion history")
    lst.add_argument("--history", action="store_true", help="also print the promotion history")
    lst.set_defaults(handler=_registry_list)
    promote = reg_sub.add_parser("promote", help="route a task to one of its versions")
    promote.add_argument("task")
    promote.add_argument("version", type=_count(1))
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
    print(f"{v.task} v{v.version}: {v.path}{' (skip-gate)' if v.skip_gate else ''}{'' if args.promote else ' (not routed)'}")
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
            print(f"{h['at']}  {h['task']}  {h['action']}  v{h['from_version']} -> v{h['to_version']}  by {h['actor']}: {h['reason']}")
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
    serve.add_argument("--port", type=_count(1, 65535), default=3000, help="port (default: 3000)")
    add_model_flags(serve, ServeConfig)
    serve.set_defaults(handler=_serve)

    tgi = sub.add_parser(
        "tgi-config",
        help="print the LORA_ADAPTERS setting (and a docker run line) for a TGI engine serving the routed adapters",
    )
    tgi.add_argument("--model-id", default="HuggingFaceTB/SmolLM2-135M-Instruct", help="base model id the engine loads")
    tgi.add_argument("--port", type=_count(1, 65535), default=8080)
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
    cmd = ["bentoml", "serve", "service.bento:SpecialistService", "--host", args.host, "--port", str(args.port), "--working-dir", str(project)]
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
    setting = ",".join(f"{task}=/adapters/{v.path.relative_to(_home() / 'registry' / 'adapters')}" for task, v in routes.items())
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
    req.add_argument("--held-out", type=_count(1), default=100, help="evaluation instances taken from --data (default 100)")
    req.add_argument("--instances-per-task", type=_count_or_all, default=64, help="training instances, or 'all' (default 64)")
    req.add_argument("--generalist", type=_generalist_choice, default="auto", help="auto (decide by evidence), none, or a ratio like 1.0")
    length = req.add_mutually_exclusive_group()
    length.add_argument("--max-steps", type=_count(1), help="training steps per candidate")
    length.add_argument("--epochs", type=float, help="epochs per candidate")
    req.add_argument("--eval-instances", type=_count(1), help="score candidates on the first N held-out instances")
    req.add_argument("--token", help="admin token (default: $SPECIALIST_ADMIN_TOKEN)")
    req.add_argument("--wait", action="store_true", help="follow the job until it ends")
    req.set_defaults(handler=_request)


def _count_or_all(text: str):
    return "all" if text == "all" else _count(1)(text)


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
    body["budget"] = {"max_steps": args.max_steps} if args.max_steps else ({"epochs": args.epochs} if args.epochs else {})
    if args.eval_instances:
        body["gate"] = {"eval_instances": args.eval_instances}
    job_id = client.submit(body)
    print(f"job {job_id} queued for task {args.task}")
    if not args.wait:
        return 0
    job = client.wait(job_id, progress=True)
    print(client.describe(job))
    return 0 if job["status"] == "promoted" else 1


def _adapter_dirs(specs: list[str]) -> dict[str, Path]:
    from specialist.paths import validate_name

    adapters: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        path = Path(path if sep else spec)
        name = name if sep else path.resolve().name
        validate_name(name, "adapter name")
        if name in adapters:
            raise SpecialistError(f"two adapters are named {name!r}", "name them with --adapter NAME=DIR")
        adapters[name] = path
    return adapters


def _base_for(spec: str | None, adapters: dict[str, Path]):
    from specialist.adapters import read_manifest
    from specialist.base_models import DEFAULT_BASE_MODEL, resolve_base_model

    if spec is None:
        spec = read_manifest(next(iter(adapters.values()))).base_model.id if adapters else DEFAULT_BASE_MODEL
    return resolve_base_model(spec)


def _eval(args: argparse.Namespace) -> int:
    from eval.benchmarks import custom_benchmark, superni_benchmark
    from eval.report import write_report
    from eval.runner import run_eval
    from specialist.paths import default_task_data
    from specialist.superni import select_tasks

    if args.out is None:
        raise SpecialistError("--out is required", "pass the folder to write scores and reports to")
    adapters = _adapter_dirs(args.adapter)
    task_dir = args.task_data or default_task_data()
    benchmarks = []
    if args.benchmark:
        if not args.definition:
            raise SpecialistError("a custom --benchmark needs --definition", "pass the task instruction its prompts use")
        benchmarks.append(custom_benchmark(args.benchmark, args.benchmark_name or args.benchmark.stem, args.definition, args.metric))
    if args.task or args.category or args.task_list or not benchmarks:
        names = select_tasks(task_dir, args.task, args.category, args.task_list)
        benchmarks += [superni_benchmark(task_dir, n, args.metric, limit=args.eval_instances) for n in names]
    run = run_eval(_base_for(args.base_model, adapters), adapters, benchmarks, args.base, args.batch_size, args.device, args.progress)
    write_report(run, args.out)
    for name in run.models:
        print(f"{name}: mean score {run.mean(name):.2f} (exact match {run.mean(name, 'exact_match'):.2f}, ROUGE-L {run.mean(name, 'rougeL'):.2f})")
    print(f"wrote {args.out}/scores.json, predictions.jsonl, report.md, chart.png")
    return 0


def _eval_score(args: argparse.Namespace) -> int:
    import json

    from eval.official import score_files

    results, missing = score_files(args.predictions, args.references)
    if missing:
        print(f"No prediction for {missing} instances. Use empty string as prediction.", file=sys.stderr)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


def _gate(args: argparse.Namespace) -> int:
    from eval.gate import DECISION_NAME, checks_table, gate_adapter, load_policy
    from specialist.adapters import MANIFEST_NAME
    from specialist.paths import default_task_data

    # Exit codes are part of the contract: 0 pass, 1 fail, 2 anything the user must fix first.
    try:
        policy = load_policy(args.policy)
        candidate = Path(args.candidate)
        if not candidate.is_dir():
            raise SpecialistError(f"candidate {candidate} is not a directory", "pass an adapter directory made by `specialist train`")
        base = _base_for(args.base_model, {"candidate": candidate} if (candidate / MANIFEST_NAME).is_file() else {})
        decision = gate_adapter(candidate, policy, base, args.task_data or default_task_data(), args.champion, args.progress)
    except SpecialistError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(checks_table(decision.checks))
    print(f"{'PASS' if decision.passed else 'FAIL'}: {candidate} -> {candidate / DECISION_NAME}")
    return 0 if decision.passed else 1


def _build(args: argparse.Namespace) -> int:
    from factory.build import BuildConfig, build_specialist

    result = build_specialist(model_from_args(BuildConfig, args, "build options"))
    for row in result["candidates"]:
        print(f"{row['name']:<24} mean {row['mean_score']:6.2f}  {'PASS' if row['passed'] else 'FAIL ' + ', '.join(row['failed_checks'])}")
    print(f"chosen: {result['chosen'] or 'none'} -- {result['reason']}")
    return 0 if result["chosen"] else 1


def _experiment(args: argparse.Namespace) -> int:
    from factory.experiment import ExperimentConfig, run_experiment

    cfg = model_from_args(ExperimentConfig, args, "experiment options")
    run_experiment(cfg)
    print((Path(cfg.out) / "results.md").read_text())
    print(f"wrote {cfg.out}/results.csv, results.md, curve.png")
    return 0


def _train(args: argparse.Namespace) -> int:
    from specialist.config import TrainConfig
    from training.recipe import train_specialist

    cfg = model_from_args(TrainConfig, args, "train options")
    outcome = train_specialist(cfg)
    t = outcome.manifest.training
    print(f"adapter: {outcome.adapter_dir}")
    print(
        f"steps: {t.steps}  epochs: {t.epochs}  loss: {t.first_loss:.4f} -> {t.final_loss:.4f}  "
        f"tokens: {t.tokens}  tokens/s: {t.tokens_per_second:.0f}  wall: {t.wall_seconds:.0f}s  device: {t.device}"
    )
    return 0


def _models_prepare(args: argparse.Namespace) -> int:
    from specialist.base_models import prepare_default

    ref = prepare_default()
    print(f"{ref.id}: {ref.path} (content sha256 {ref.content_sha256[:16]}...)")
    return 0


def _models_list(args: argparse.Namespace) -> int:
    import json

    from specialist.base_models import MARKER
    from specialist.paths import models_cache_dir

    cache = models_cache_dir()
    found = sorted(p for p in cache.glob("*") if (p / MARKER).is_file()) if cache.is_dir() else []
    if not found:
        print(f"no prepared models in {cache} (run `specialist models prepare`)")
    for path in found:
        info = json.loads((path / MARKER).read_text())
        size = sum(f.stat().st_size for f in path.iterdir()) / 1e6
        print(f"{info['id']}\t{path}\t{size:.0f} MB\tfrom {info['source']}")
    return 0


def _task_dir(args):
    from specialist.paths import default_task_data

    return Path(args.task_data) if args.task_data else default_task_data()


def _tasks_list(args: argparse.Namespace) -> int:
    from specialist.superni import select_tasks, task_categories

    task_dir = _task_dir(args)
    by_task = task_categories(task_dir)
    names = select_tasks(task_dir, categories=[args.category]) if args.category else list(by_task)
    for name in names:
        print(f"{name}\t{', '.join(by_task[name])}")
    return 0


def _tasks_categories(args: argparse.Namespace) -> int:
    from collections import Counter

    from specialist.superni import task_categories

    counts = Counter(c for cats in task_categories(_task_dir(args)).values() for c in cats)
    for category, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"{n}\t{category}")
    return 0


def _quiet_libraries() -> None:
    """Our own progress bars and messages say what is happening; silence the libraries' per-load chatter."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        return args.handler(args)
    except SpecialistError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted (a training run continues with the same command plus --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
