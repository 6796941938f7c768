"""Data-parallel training over torch.distributed: `specialist train --nproc N`, or the same command under
`torchrun` / `accelerate launch` (they set RANK and WORLD_SIZE, which is all this reads).

Every rank holds the same data and replays the single-process run's micro-batches; it takes every N-th row of
each, backpropagates its rows' summed loss over the whole step's response-token count (which every rank can
count, since it holds every row), and the ranks' gradients are summed (`all_reduce`) before the same optimizer
step on every rank. So N processes take the single-process run's steps with its global batch, up to the order
of float additions (and dropout masks, which are drawn per rank). Rank 0 alone writes checkpoints, the log and
the adapter.

    specialist train --nproc 2 --task task363_sst2_polarity_classification --max-steps 40 --out runs/sst2
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def rows(self, batch: list[int]) -> list[int]:
        """This rank's share of a micro-batch."""
        return batch[self.rank :: self.world]


def from_env() -> Ranks:
    """The ranks torchrun (or our launcher, or accelerate) set; one process when none did."""
    return Ranks(
        int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    )


def start(ranks: Ranks, device: torch.device) -> None:
    if ranks.world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def stop(ranks: Ranks) -> None:
    if ranks.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    if ranks.world > 1:
        dist.barrier()


def sum_gradients(params: list[torch.Tensor], ranks: Ranks) -> None:
    """Every rank's gradients summed into each (one flat all_reduce per step); a rank that had no rows in a
    step contributes zeros."""
    if ranks.world == 1:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


def sum_value(value: float, ranks: Ranks) -> float:
    if ranks.world == 1:
        return value
    total = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(total)
    return float(total.item())


def launch(config_json: str, nproc: int, threads_per_process: int) -> None:
    """Run a training config in `nproc` processes with torchrun's own launcher (torch.distributed.run),
    rendezvous on this machine. Raises torch's ChildFailedError when a process fails."""
    from torch.distributed.run import parse_args, run

    before = os.environ.get("OMP_NUM_THREADS")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train_config.json"
        path.write_text(config_json)
        os.environ["OMP_NUM_THREADS"] = str(threads_per_process)  # the workers' (torchrun would set 1 and warn)
        try:
            run(parse_args(["--standalone", "--nproc-per-node", str(nproc), "-m", "training.distributed", str(path)]))
        finally:  # this process's own setting is left as it was
            if before is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = before


if __name__ == "__main__":  # one of launch()'s processes
    from specialist.config import TrainConfig
    from specialist.errors import SpecialistError
    from training.recipe import train_specialist

    try:
        train_specialist(TrainConfig.model_validate_json(Path(sys.argv[1]).read_text()))
    except SpecialistError as e:
        print(f"error (rank {from_env().rank}): {e}", file=sys.stderr)
        sys.exit(1)
