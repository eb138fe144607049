"""Data-parallel training under torchrun: which process this is, its device, and the wrapped model.

Launched without torchrun (WORLD_SIZE unset or 1) a run is one process of a world of one, and none of this
touches torch.distributed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn as nn

from ferkit.devices import resolve_device


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 writes the run folder; the other ranks only train."""
        return self.rank == 0

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        """This rank's share of an epoch's order, which every rank draws identically."""
        return order[self.rank::self.world]


def setup_distributed(device: str = "auto") -> tuple[Distributed, torch.device]:
    """Join the process group when launched by torchrun (nccl on CUDA, gloo otherwise) and pick this process's
    device: ``device`` as ferkit.devices.resolve_device reads it, with "cuda" meaning this process's own GPU,
    cuda:LOCAL_RANK, under torchrun."""
    name = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed(), torch.device(name)
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "cuda":
        name = f"cuda:{local_rank}"
    if name.startswith("cuda"):
        torch.cuda.set_device(name)  # nccl binds each process to the current device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if name.startswith("cuda") else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), local_rank), torch.device(name)


def distribute(model: nn.Module, ddp: Distributed, device: torch.device) -> nn.Module:
    """The module the training steps run: ``model`` itself in a single process, wrapped so that backward
    averages the gradients over the processes under torchrun."""
    if ddp.world <= 1:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
