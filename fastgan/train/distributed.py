"""torch.distributed for the Trainer: started by torchrun (WORLD_SIZE, RANK, LOCAL_RANK
in the environment) with NCCL on GPUs and gloo on CPUs."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: torch.device | None) -> tuple[World, torch.device]:
    """The process group (joined if torchrun started this process and nobody has yet)
    and this process's device: cuda:LOCAL_RANK on GPUs, else the given device."""
    if dist.is_available() and dist.is_initialized():
        world = World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        use_cuda = (device is None or torch.device(device).type == "cuda") and torch.cuda.is_available()
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        world = World(dist.get_rank(), dist.get_world_size(), local_rank)
    else:
        world = World()
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and world.distributed:
        device = torch.device("cuda", world.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return world, device


def all_reduce_sum(t: torch.Tensor, world: World) -> torch.Tensor:
    if world.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
