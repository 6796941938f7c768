"""`specialist`: turn a base LLM into task specialists (LoRA adapters).

Every user error ends as one line on stderr; tracebacks are for bugs. Exit codes, in every subcommand:
0 success, 1 a failed check or operation, 2 a usage error (a bad option, flag or config file).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from types import SimpleNamespace

# Models load from local files; the hub is used only when the user opts in with HF_HUB_OFFLINE=0.
# Must be set before huggingface_hub is imported (it reads the variable once).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pydantic import Field  # noqa: E402

from cli import evaluate, serving  # noqa: E402
from cli.options import add_model_flags, model_from_args  # noqa: E402
from specialist.config import MixtureConfig, StrictModel  # noqa: E402
from specialist.database import STORAGE_ERRORS, storage_error_line, storage_fix  # noqa: E402
from specialist.errors import SpecialistError, UsageError  # noqa: E402
from specialist.paths import default_task_data  # noqa: E402


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
        description="Train a LoRA adapter on task instances (outside each task's evaluation set: for SuperNI, its first 100) mixed with "
        "generalist records. Writes a PEFT adapter directory with manifest.json to --out.",
        epilog="example: specialist train --task task363_sst2_polarity_classification --instances-per-task 64 "
        "--generalist-ratio 1.0 --epochs 2 --out runs/sst2",
    )
    add_model_flags(train, TrainConfig, required=("out",))
    train.set_defaults(handler=_train)

    evaluate.add_parsers(sub)
    serving.add_parsers(sub)

    models = sub.add_parser("models", help="prepare and list base models")
    models_sub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    prepare = models_sub.add_parser(
        "prepare", help="convert the packaged SmolLM2-135M-Instruct GGUF into an HF directory (once)"
    )
    prepare.set_defaults(handler=_models_prepare)
    listing = models_sub.add_parser("list", help="show the base models in the models cache")
    listing.set_defaults(handler=_models_list)

    tasks = sub.add_parser("tasks", help="list SuperNI tasks and categories in a task-data folder")
    tasks_sub = tasks.add_subparsers(dest="tasks_command", required=True, metavar="ACTION")
    for name, options, help_text, handler in (
        ("list", TasksList, "task names with their categories", _tasks_list),
        ("categories", TaskData, "categories with their task counts", _tasks_categories),
    ):
        action = tasks_sub.add_parser(name, help=help_text)
        add_model_flags(action, options, config_file=False)
        action.set_defaults(
            handler=lambda args, options=options, handler=handler: handler(model_from_args(options, args))
        )
    return parser


def _train(args: argparse.Namespace) -> int:
    from specialist.config import TrainConfig
    from training.recipe import train_specialist

    cfg = model_from_args(TrainConfig, args, "train options")
    if cfg.nproc > 1 and "WORLD_SIZE" not in os.environ:  # start the processes (under torchrun: already one of them)
        from specialist.adapters import read_manifest
        from training.distributed import launch
        from training.recipe import preflight

        preflight(cfg)
        threads = max(1, (cfg.num_threads or os.cpu_count() or 1) // cfg.nproc)
        try:
            launch(cfg.model_dump_json(), cfg.nproc, threads)
        except Exception as e:  # noqa: BLE001 - torch's ChildFailedError: the failing process printed its error
            raise SpecialistError(f"a training process failed: {str(e).splitlines()[0][:200]}") from None
        outcome = SimpleNamespace(adapter_dir=cfg.out, manifest=read_manifest(cfg.out))
    else:
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
    print(
        f"{ref.id}: {ref.path}\n  content sha256 {ref.content_sha256}\n  from {ref.source}, sha256 {ref.source_sha256}"
    )
    return 0


def _models_list(args: argparse.Namespace) -> int:
    from specialist.base_models import prepared_models
    from specialist.paths import models_cache_dir

    found = prepared_models()
    if not found:
        print(f"no prepared models in {models_cache_dir()} (run `specialist models prepare`)")
    for ref in found:
        size = sum(f.stat().st_size for f in ref.path.iterdir()) / 1e6
        source = f"\tfrom {ref.source}, sha256 {ref.source_sha256}" if ref.source else ""
        print(f"{ref.id}\t{ref.path}\t{size:.0f} MB\tcontent sha256 {ref.content_sha256}{source}")
    return 0


class TaskData(StrictModel):
    """Task data."""

    task_data: Path = Field(
        default_factory=default_task_data, description=MixtureConfig.model_fields["task_data"].description
    )


class TasksList(TaskData):
    category: str | None = Field(None, description="only tasks of this category")


def _tasks_list(args: TasksList) -> int:
    from specialist.superni import select_tasks, task_categories

    task_dir = args.task_data
    by_task = task_categories(task_dir)
    names = select_tasks(task_dir, categories=[args.category]) if args.category else list(by_task)
    for name in names:
        print(f"{name}\t{', '.join(by_task[name])}")
    return 0


def _tasks_categories(args: TaskData) -> int:
    from collections import Counter

    from specialist.superni import task_categories

    counts = Counter(c for cats in task_categories(args.task_data).values() for c in cats)
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
    try:  # building the parser imports torch, which needs a writable temp dir: inside, for a one-line error
        args = build_parser().parse_args(argv)
        _quiet_libraries()
        return args.handler(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SpecialistError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `specialist tasks list | head -1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        return 0
    except STORAGE_ERRORS as e:  # a full disk, a read-only home, a vanished file, a database down: one line
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        why = e.strerror if isinstance(e, OSError) and e.strerror else storage_error_line(e)
        print(f"error: could not read or write files or the database ({why}{where}); {storage_fix()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted (a training run continues with the same command plus --resume)", file=sys.stderr)
        return 130


def entry() -> int:
    """The `specialist` command. `train` re-executes itself under jemalloc when SPECIALIST_ALLOCATOR=jemalloc
    (specialist.allocator: faster, but not bounded over long runs)."""
    if sys.argv[1:2] == ["train"]:
        from specialist.allocator import reexec_under_jemalloc

        reexec_under_jemalloc()
    return main()


if __name__ == "__main__":
    sys.exit(entry())
