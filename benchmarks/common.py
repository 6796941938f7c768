"""Pieces the benchmarks share."""

from __future__ import annotations

from pathlib import Path


def random_adapters(root: Path, tasks: list[str], scale: float = 1.0) -> list[Path]:
    """One LoRA adapter per entry of `tasks` on the default model, with random non-zero weights (B scaled by
    `scale`) and a manifest whose prompt is that SuperNI task's: speed does not depend on what weights learned."""
    import torch
    from peft import LoraConfig, get_peft_model

    from eval.benchmarks import task_benchmark
    from specialist.adapters import AdapterManifest, BaseModelInfo, MixtureRecord, TrainingRecord, write_manifest
    from specialist.base_models import DEFAULT_BASE_MODEL, load_model, resolve_base_model
    from specialist.paths import default_task_data

    base = resolve_base_model(DEFAULT_BASE_MODEL)
    paths = []
    for i, task in enumerate(tasks):
        torch.manual_seed(100 + i)
        model = get_peft_model(
            load_model(base, torch.device("cpu"), torch.float32),
            LoraConfig(r=16, target_modules="all-linear", init_lora_weights=False),
        )
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.mul_(scale)
        path = root / f"adapter{i}"
        model.save_pretrained(path)
        write_manifest(
            path,
            AdapterManifest(
                base_model=BaseModelInfo(id=base.id, content_sha256=base.content_sha256),
                tasks={task: task_benchmark(default_task_data(), task, limit=1).prompt},
                mixture=MixtureRecord(
                    spec={}, specialist_examples=0, generalist_examples=0, per_task={}, sources={}, content_sha256=""
                ),
                hyperparameters={},
                seed=100 + i,
                training=TrainingRecord(
                    steps=0,
                    epochs=0,
                    examples_seen=0,
                    tokens=0,
                    tokens_per_second=0,
                    wall_seconds=0,
                    first_loss=None,
                    final_loss=None,
                    device="cpu",
                    dtype="float32",
                ),
                loss_curve=[],
                package_versions={},
            ),
        )
        paths.append(path)
    return paths
