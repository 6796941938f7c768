"""Recipe: train one specialist adapter.

    specialist train --task task363_sst2_polarity_classification --instances-per-task 64 \
        --generalist-ratio 1.0 --epochs 2 --out runs/sst2

config -> mixture -> tokens -> base model + LoRA -> loop -> PEFT dir + manifest, renamed into place at the end.
Run state lives in a hidden sibling `.<out>.partial/` until then, which is what --resume continues.
"""

from __future__ import annotations

import importlib.metadata
import json
import random
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from specialist.adapters import (
    MANIFEST_NAME,
    AdapterManifest,
    BaseModelInfo,
    TrainingRecord,
    check_adapter,
    read_manifest,
    write_manifest,
)
from specialist.adapters.model_card import write_model_card
from specialist.allocator import bound_glibc_heap
from specialist.base_models import load_model, load_tokenizer, pick_device, portable_id, resolve_base_model
from specialist.config import LoraSettings, OptimSettings, TrainConfig
from specialist.errors import SpecialistError
from specialist.paths import atomic_dir, share_read
from training import distributed
from training.batching import encode_examples
from training.loop import LoopState, Plan, latest_checkpoint, plan_steps, train_loop
from training.lora import attach_lora
from training.mixture import build_mixture

RUN_CONFIG = "run_config.json"


@dataclass(frozen=True)
class TrainOutcome:
    adapter_dir: Path
    manifest: AdapterManifest


def work_dir_for(out: Path) -> Path:
    """Where an unfinished run keeps its checkpoints: hidden, beside `out`, never mistaken for an adapter."""
    return out.parent / f".{out.name}.partial"


def train_specialist(
    cfg: TrainConfig,
    on_step: Callable[[LoopState, Plan], None] | None = None,
    on_checkpoint: Callable[[LoopState, Path], None] | None = None,
) -> TrainOutcome:
    """Train one adapter into `cfg.out`. `on_step(state, plan)` is called after every optimizer step,
    `on_checkpoint(state, path)` after every resumable checkpoint is written."""
    out = Path(cfg.out)
    work = work_dir_for(out)
    ranks = distributed.from_env()
    _check_out(out, work, cfg)

    if cfg.num_threads:
        torch.set_num_threads(max(1, cfg.num_threads // ranks.world))  # the processes share the cores
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    # Everything the user can get wrong is checked before the slow model load.
    mixture = build_mixture(cfg)
    base = resolve_base_model(cfg.base_model)
    device, dtype = pick_device(cfg.device)
    if device.type == "cuda" and ranks.world > 1:  # one GPU per process
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    distributed.start(ranks, device)
    tokenizer = load_tokenizer(base)
    encoded, skipped = encode_examples(tokenizer, mixture.examples, cfg.max_seq_len)
    if not encoded:
        raise SpecialistError(
            f"every example is longer than --max-seq-len {cfg.max_seq_len} tokens", "raise --max-seq-len"
        )
    record = mixture.record.model_copy(update={"skipped_too_long": skipped})

    model = attach_lora(load_model(base, device, dtype), cfg, cfg.seed)
    if cfg.gradient_checkpointing:
        if device.type == "cpu":
            bound_glibc_heap()  # without jemalloc, glibc's heap would hold several times the live activations
        # Non-reentrant checkpointing: gradients reach the LoRA weights although the frozen embeddings' output
        # needs none (the reentrant kind would need enable_input_require_grads), and dropout replays exactly.
        model.base_model.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    plan = plan_steps(len(encoded), cfg, cfg.effective_epochs)
    resuming = cfg.resume and latest_checkpoint(work) is not None
    if ranks.main:
        work.mkdir(parents=True, exist_ok=True)
        (work / RUN_CONFIG).write_text(
            json.dumps({"fingerprint": cfg.fingerprint(), "config": cfg.model_dump(mode="json")}, indent=2)
        )
    distributed.barrier(ranks)  # the work folder exists for every rank
    if cfg.progress and ranks.main:
        print(
            f"{'Resuming' if resuming else 'Training'} {', '.join(mixture.record.per_task)}: "
            f"{record.specialist_examples} task + {record.generalist_examples} generalist examples"
            f"{f', {skipped} too long skipped' if skipped else ''}; {plan.total_steps} steps on {device} ({str(dtype).removeprefix('torch.')})",
            flush=True,
        )
    state = train_loop(
        model,
        encoded,
        cfg,
        plan,
        seed=cfg.seed,
        pad_id=tokenizer.pad_token_id,
        device=device,
        work_dir=work,
        checkpoint_every=cfg.checkpoint_every,
        resume=cfg.resume,
        progress=cfg.progress,
        on_step=on_step,
        on_checkpoint=on_checkpoint,
        ranks=ranks,
    )

    manifest = AdapterManifest(
        base_model=BaseModelInfo(
            id=base.id, content_sha256=base.content_sha256, source=base.source, source_sha256=base.source_sha256
        ),
        tasks=mixture.task_prompts,
        mixture=record,
        hyperparameters=cfg.model_dump(
            mode="json", include=set(LoraSettings.model_fields) | set(OptimSettings.model_fields)
        ),
        seed=cfg.seed,
        training=TrainingRecord(
            steps=state.step,
            epochs=round(plan.epochs, 4),
            examples_seen=state.examples_seen,
            tokens=state.tokens,
            tokens_per_second=round(state.tokens / max(state.elapsed, 1e-9), 1),
            wall_seconds=round(state.elapsed, 2),
            first_loss=state.losses[0] if state.losses else None,
            final_loss=state.losses[-1] if state.losses else None,
            device=str(device),
            dtype=str(dtype).removeprefix("torch."),
            processes=ranks.world,
            global_batch=cfg.batch_size * cfg.grad_accum,
        ),
        loss_curve=[round(x, 6) for x in state.losses],
        package_versions=_package_versions(),
        run_fingerprint=cfg.fingerprint(),
    )
    if not ranks.main:  # rank 0 publishes the adapter; the others wait for it, so every process ends with it
        distributed.barrier(ranks)
        distributed.stop(ranks)
        return TrainOutcome(adapter_dir=out, manifest=manifest)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        # peft records the base model's local path: record its portable id instead (the manifest keeps the hash).
        config_path = tmp / "adapter_config.json"
        config_path.write_text(
            json.dumps(json.loads(config_path.read_text()) | {"base_model_name_or_path": portable_id(base)}, indent=2)
        )
        shutil.copy(work / "train_log.jsonl", tmp / "train_log.jsonl")
        write_manifest(tmp, manifest)
        write_model_card(tmp, manifest)  # replaces peft's empty template
        problems = check_adapter(tmp).problems  # what every later stage will check, checked before publishing
        if problems:  # a bug, not a user error: refuse to publish an adapter nothing could load
            raise RuntimeError(f"refusing to write an unacceptable adapter: {'; '.join(problems)}")
        share_read(tmp)
    shutil.rmtree(work, ignore_errors=True)
    distributed.barrier(ranks)
    distributed.stop(ranks)
    return TrainOutcome(adapter_dir=out, manifest=manifest)


def preflight(cfg: TrainConfig) -> None:
    """What a user can get wrong, checked before processes are started for it (`--nproc`): one line, not
    one traceback per process."""
    _check_out(Path(cfg.out), work_dir_for(Path(cfg.out)), cfg)
    build_mixture(cfg)
    resolve_base_model(cfg.base_model)


def train_or_reuse(
    cfg: TrainConfig,
    on_step: Callable[[LoopState, Plan], None] | None = None,
    on_checkpoint: Callable[[LoopState, Path], None] | None = None,
) -> Path:
    """Train `cfg.out` unless it already holds an adapter made with the same options (recipes that train many
    adapters rerun cheaply); an interrupted one is resumed."""
    out = Path(cfg.out)
    if (out / MANIFEST_NAME).is_file():
        if read_manifest(out).run_fingerprint != cfg.fingerprint():
            raise SpecialistError(
                f"{out} holds an adapter trained with other options", "use another --out or delete it"
            )
        print(f"reusing {out}", flush=True)
        return out
    return train_specialist(cfg.model_copy(update={"resume": True}), on_step, on_checkpoint).adapter_dir


def _check_out(out: Path, work: Path, cfg: TrainConfig) -> None:
    if out.exists():
        what = "a finished adapter" if (out / MANIFEST_NAME).is_file() else "not an adapter made by this run"
        raise SpecialistError(f"--out {out} already exists ({what})", "choose another --out or delete it")
    if not work.exists():
        return
    if not cfg.resume:
        raise SpecialistError(
            f"an interrupted run of --out {out} exists in {work}", "pass --resume to continue it, or delete that folder"
        )
    try:
        saved = json.loads((work / RUN_CONFIG).read_text())["fingerprint"]
    except (OSError, ValueError, KeyError):
        raise SpecialistError(f"{work} holds no readable run config", "delete that folder and start again") from None
    if saved != cfg.fingerprint():
        raise SpecialistError(
            f"the interrupted run in {work} used a different config",
            "resume with the same options, or delete that folder to start over",
        )


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in ("specialist-factory", "torch", "transformers", "peft", "safetensors", "tokenizers"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["python"] = ".".join(map(str, sys.version_info[:3]))
    return versions
