"""The SFT loop: response-only loss, correct gradient accumulation, checkpoints that resume exactly."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from specialist.config import OptimSettings
from training.batching import (
    IGNORE_INDEX,
    Batch,
    EncodedExample,
    collate,
    collate_shared_prefixes,
    length_grouped_batches,
)
from training.distributed import Ranks, barrier, sum_gradients, sum_value

# Architectures whose causal-LM forward is exactly `lm_head(decoder(x))`: for these the response-only head
# below is the same loss. Others (logit scaling or soft-capping in the forward) take the full forward.
PLAIN_HEAD_MODELS = {"llama", "mistral", "qwen2", "qwen3", "phi3", "olmo", "olmo2", "smollm3", "starcoder2"}
COMPLETE = "COMPLETE"  # written last into a checkpoint dir; only marked checkpoints are resumed
KEEP_CHECKPOINTS = 2


@dataclass
class LoopState:
    step: int = 0
    losses: list[float] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)
    tokens: int = 0  # tokens of the examples trained on (what tokens/s counts)
    positions: int = 0  # positions the model ran for them: padding adds to it, a shared prefix takes from it
    examples_seen: int = 0
    elapsed: float = 0.0


@dataclass(frozen=True)
class Plan:
    total_steps: int
    batches_per_epoch: int
    grad_accum: int = 1

    @property
    def epochs(self) -> float:
        """Passes over the data: each optimizer step consumes `grad_accum` micro-batches."""
        return 0.0 if not self.batches_per_epoch else self.total_steps * self.grad_accum / self.batches_per_epoch


def plan_steps(num_examples: int, opt: OptimSettings, epochs: float | None) -> Plan:
    batches = math.ceil(num_examples / opt.batch_size)
    if opt.max_steps is not None:
        return Plan(opt.max_steps, batches, opt.grad_accum)
    return Plan(max(1, math.ceil(epochs * batches / opt.grad_accum)), batches, opt.grad_accum)


def shares_prefixes(model) -> bool:
    """Whether `collate_shared_prefixes` is exact for this model: its own position ids and a custom 4-D mask
    reach every attention layer (SDPA, no sliding window) and the head is plain."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    return (
        config.model_type in PLAIN_HEAD_MODELS
        and getattr(config, "_attn_implementation", None) == "sdpa"
        and getattr(config, "sliding_window", None) is None
    )


def token_loss_sum(model, batch: Batch) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over response tokens, and how many there are.

    The LM head runs only on positions that have a target: prompts are long and responses short, so
    projecting every position onto the 49k-word vocabulary would be mostly wasted work.
    """
    mask = batch.targets != IGNORE_INDEX
    targets = batch.targets[mask]
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = getattr(base, base.base_model_prefix, None)
    head = base.get_output_embeddings()
    if decoder is None or head is None or base.config.model_type not in PLAIN_HEAD_MODELS:
        logits = model(**batch.model_inputs()).logits
        return F.cross_entropy(logits[mask].float(), targets, reduction="sum"), int(mask.sum())
    hidden = decoder(**batch.model_inputs()).last_hidden_state
    return F.cross_entropy(head(hidden[mask]).float(), targets, reduction="sum"), int(mask.sum())


def cosine_with_warmup(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def train_loop(
    model,
    examples: list[EncodedExample],
    opt: OptimSettings,
    plan: Plan,
    *,
    seed: int,
    pad_id: int,
    device: torch.device,
    work_dir: Path,
    checkpoint_every: int,
    resume: bool,
    progress: bool = True,
    on_step: Callable[[LoopState, Plan], None] | None = None,
    on_checkpoint: Callable[[LoopState, Path], None] | None = None,
    ranks: Ranks = Ranks(),
) -> LoopState:
    """Run `plan.total_steps` optimizer steps; returns the final state (loss curve, tokens, time).
    `on_step(state, plan)` follows every step; `on_checkpoint(state, path)` every checkpoint, once it is complete.
    `ranks`: this process's share of data-parallel training (training.distributed); the state is the global one."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=opt.learning_rate, weight_decay=opt.weight_decay)
    warmup = int(opt.warmup_ratio * plan.total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(warmup, plan.total_steps))
    state = LoopState()
    if resume and (ckpt := latest_checkpoint(work_dir)) is not None:
        state = load_checkpoint(ckpt, model, optimizer, scheduler)
    log_path = work_dir / "train_log.jsonl"
    if ranks.main:
        log_path.write_text("".join(json.dumps(row) + "\n" for row in state.log))

    # Rows that share a prompt prefix run it once (same loss and gradients) where the model allows it.
    make_batch = collate
    if opt.share_prompt_prefixes and shares_prefixes(model):
        hidden = (model.get_base_model() if hasattr(model, "get_base_model") else model).config.hidden_size
        make_batch = partial(collate_shared_prefixes, break_even=6 * hidden)  # see shared_prefix_packs
    lengths = [len(ex) for ex in examples]
    epoch_batches: dict[int, list[list[int]]] = {}

    def micro_batch(index: int) -> list[int]:
        # Micro-batch `index` of an endless stream of epochs: a function of (seed, index) alone, so a
        # resumed run sees exactly the batches the uninterrupted run would have seen.
        epoch, offset = divmod(index, plan.batches_per_epoch)
        if epoch not in epoch_batches:
            epoch_batches.clear()
            epoch_batches[epoch] = length_grouped_batches(lengths, opt.batch_size, seed, epoch)
        return epoch_batches[epoch][offset]

    model.train()
    bar = tqdm(
        total=plan.total_steps,
        initial=state.step,
        desc="training",
        unit="step",
        disable=not progress or not ranks.main,
        dynamic_ncols=True,
    )
    started = time.perf_counter() - state.elapsed
    with open(log_path, "a") if ranks.main else open(os.devnull, "w") as log_file:
        for step in range(state.step, plan.total_steps):
            batches = [micro_batch(step * opt.grad_accum + j) for j in range(opt.grad_accum)]
            # Normalise by the response tokens of the whole step, not per micro-batch: a mean of
            # per-micro-batch means over-weights short batches (transformers PR 34191). Every rank counts the
            # whole step's (it holds every row), so the ranks' summed gradients are the one-process gradient.
            step_tokens = sum(_response_tokens(examples[i]) for rows in batches for i in rows)
            loss_total = 0.0
            for rows in batches:
                state.tokens += sum(len(examples[i]) for i in rows)
                state.examples_seen += len(rows)
                mine = ranks.rows(rows)
                if not mine:  # fewer rows than ranks: this one adds zeros to the sum
                    continue
                batch = make_batch([examples[i] for i in mine], pad_id).to(device)
                state.positions += batch.positions
                loss_sum, _ = token_loss_sum(model, batch)
                (loss_sum / max(1, step_tokens)).backward()
                loss_total += loss_sum.item()
            sum_gradients(params, ranks)
            loss_total = sum_value(loss_total, ranks)
            torch.nn.utils.clip_grad_norm_(params, opt.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            state.step = step + 1
            state.elapsed = time.perf_counter() - started
            loss = loss_total / max(1, step_tokens)
            state.losses.append(loss)
            row = {
                "step": state.step,
                "loss": round(loss, 6),
                "lr": scheduler.get_last_lr()[0],
                "tokens": state.tokens,
                "positions": state.positions,
                "tokens_per_second": round(state.tokens / max(state.elapsed, 1e-9), 1),
                "elapsed": round(state.elapsed, 2),
            }
            state.log.append(row)
            log_file.write(json.dumps(row) + "\n")
            log_file.flush()
            bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{row['tokens_per_second']:.0f}")
            bar.update(1)
            if on_step is not None and ranks.main:
                on_step(state, plan)
            if state.step % checkpoint_every == 0 and state.step < plan.total_steps:
                path = save_checkpoint(work_dir, model, optimizer, scheduler, state) if ranks.main else None
                barrier(ranks)  # every rank goes on once the checkpoint is complete (a resume reads it)
                if on_checkpoint is not None and path is not None:
                    on_checkpoint(state, path)
    bar.close()
    return state


def _response_tokens(example: EncodedExample) -> int:
    """Labelled positions of an example after the shift (what `token_loss_sum` counts for it)."""
    return len(example) - max(1, example.prompt_len)


def _trainable(model) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(work_dir: Path, model, optimizer, scheduler, state: LoopState) -> Path:
    """Write checkpoint `step-N` atomically: a temp dir, a COMPLETE marker, then a rename."""
    root = work_dir / "checkpoints"
    final = root / f"step-{state.step:08d}"
    tmp = root / f".tmp-step-{state.step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({n: p.detach().contiguous().cpu() for n, p in _trainable(model).items()}, tmp / "trainable.safetensors")
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng,
            "state": {k: getattr(state, k) for k in LoopState.__dataclass_fields__},
        },
        tmp / "state.pt",
    )
    (tmp / COMPLETE).write_text(str(state.step))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(p for p in root.iterdir() if p.name.startswith("step-"))[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(work_dir: Path) -> Path | None:
    root = work_dir / "checkpoints"
    if not root.is_dir():
        return None
    marked = sorted(p for p in root.iterdir() if p.name.startswith("step-") and (p / COMPLETE).is_file())
    return marked[-1] if marked else None


def load_checkpoint(path: Path, model, optimizer, scheduler) -> LoopState:
    weights = load_file(path / "trainable.safetensors")
    params = _trainable(model)
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)
    blob = torch.load(path / "state.pt", weights_only=True)  # weights_only: no arbitrary unpickling
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["rng"]["torch"])
    if "cuda" in blob["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(blob["rng"]["cuda"])
    return LoopState(**blob["state"])
