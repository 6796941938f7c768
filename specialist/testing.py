"""The fixture toolkit: what tests, benchmarks and the reliability suite build to run against.

- `write_superni_task`: a task file in the upstream SuperNI format.
- `tiny_llama`: a 2-layer Llama with a small byte-level BPE trained on some text, built in seconds.
- `random_adapters`: LoRA adapters with random non-zero weights and a valid manifest, on any base model:
  for speed and routing, what the weights learned does not matter, only that each adapter answers its own way.
The live server they are served by is `service.live.LiveServer`. Heavy libraries load only when called.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path


def write_superni_task(path: Path, definition: str, instances: list[dict], examples: list[dict], category: str) -> Path:
    """Write a SuperNI task file (gzipped when `path` ends in .gz); `instances` are {id, input, output: [..]}."""
    raw = {
        "Contributors": ["tests"],
        "Categories": [category],
        "Definition": [definition],
        "Positive Examples": examples,
        "Negative Examples": [],
        "Instances": instances,
        "Instance License": ["Apache 2.0"],
    }
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            json.dump(raw, f)
    else:
        path.write_text(json.dumps(raw))
    return path


def tiny_llama(out: Path, corpus: list[str], seed: int = 0) -> Path:
    """A 2-layer Llama (hidden 64) with a 512-token byte-level BPE trained on `corpus`, saved to `out`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        unk_token="<|endoftext|>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
    )

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        initializer_range=0.3,  # frozen tied embeddings bound the logits: a wider init lets LoRA move them
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return Path(out)


def random_adapters(
    root: Path,
    tasks: list[str],
    scale: float = 1.0,
    base_model: str | None = None,
    task_data: Path | None = None,
) -> list[Path]:
    """One LoRA adapter per entry of `tasks` (rank 16, every linear layer), seeded 100, 101, ... so that
    entries differ, with random B weights scaled by `scale` and a manifest whose prompt is that task's (read
    from `task_data`, default the SuperNI data). `base_model` defaults to the packaged default model."""
    import torch
    from peft import LoraConfig, get_peft_model

    from eval.benchmarks import task_benchmark
    from specialist.adapters import AdapterManifest, BaseModelInfo, MixtureRecord, TrainingRecord, write_manifest
    from specialist.base_models import DEFAULT_BASE_MODEL, load_model, resolve_base_model
    from specialist.paths import default_task_data

    base = resolve_base_model(base_model or DEFAULT_BASE_MODEL)
    task_data = task_data or default_task_data()
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
        path = Path(root) / f"adapter{i}"
        model.save_pretrained(path)
        write_manifest(
            path,
            AdapterManifest(
                base_model=BaseModelInfo(
                    id=base.id, content_sha256=base.content_sha256, source=base.source, source_sha256=base.source_sha256
                ),
                tasks={task: task_benchmark(task_data, task, limit=1).prompt},
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
