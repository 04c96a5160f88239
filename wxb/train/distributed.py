"""Data-parallel training under ``torchrun``: which process am I, and what the processes share.

``torchrun --nproc_per_node N script.py`` starts N copies of the script with the environment
variables RANK, LOCAL_RANK and WORLD_SIZE set. The Trainer reads them through ``Distributed``:
with WORLD_SIZE > 1 it joins the process group (NCCL on GPUs, Gloo on CPUs), wraps the model in
DistributedDataParallel, gives each process its own slice of every batch, and lets only the
first process (rank 0) write logs, checkpoints and plots. Without torchrun nothing changes.

Each optimizer step sees per_device_train_batch_size x WORLD_SIZE examples, as in Hugging Face;
DDP averages the gradients, so N processes with batches of B train like one with batches of N*B.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from wxb.errors import ConfigError


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls) -> Distributed:
        """The layout torchrun describes in the environment; a single process without it."""
        try:
            values = {name: int(os.environ.get(var, default)) for name, var, default in (
                ("rank", "RANK", 0), ("local_rank", "LOCAL_RANK", 0),
                ("world_size", "WORLD_SIZE", 1))}
        except ValueError as err:
            raise ConfigError(f"RANK, LOCAL_RANK and WORLD_SIZE must be integers (as torchrun "
                              f"sets them): {err}") from None
        return cls(**values)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, use_cpu: bool) -> torch.device:
        """This process' device: its own GPU (LOCAL_RANK) when there are GPUs, else the CPU."""
        if not torch.cuda.is_available() or use_cpu:
            return torch.device("cpu")
        count = torch.cuda.device_count()
        if self.local_rank >= count:
            raise ConfigError(f"process LOCAL_RANK {self.local_rank} has no GPU of its own: this "
                              f"machine has {count}; launch torchrun with --nproc_per_node "
                              f"{count}, or train on the CPU with use_cpu: true")
        return torch.device("cuda", self.local_rank)

    def init(self, device: torch.device) -> None:
        """Join the process group (once); every process must call this."""
        if not self.enabled or dist.is_initialized():
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        # Leave the group before the interpreter shuts down: Gloo threads still alive at exit
        # can abort the process ("terminate called without an active exception").
        atexit.register(_leave_process_group)

    def shard(self, batch: list[int]) -> list[int]:
        """This process' part of a global batch of example indices."""
        return batch[self.rank::self.world_size]

    def mean(self, value: float, device: torch.device) -> float:
        """The mean of ``value`` over all processes (every process must call this)."""
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return float(tensor) / self.world_size

    def any(self, flag: bool, device: torch.device) -> bool:
        """Whether ``flag`` is true in any process (every process must call this)."""
        if not self.enabled:
            return flag
        tensor = torch.tensor([int(flag)], device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def _leave_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
