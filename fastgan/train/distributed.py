"""torch.distributed for the Trainer: started by torchrun (WORLD_SIZE, RANK, LOCAL_RANK
in the environment) with NCCL on GPUs and gloo on CPUs; how a global batch splits over
the processes and micro-batches, and the DDP wrapper."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


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
    elif device.type == "cuda" and device.index is None:
        # "cuda" means the current device; torch.cuda.set_device needs an index.
        device = torch.device("cuda", torch.cuda.current_device())
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


def split_batch(batch_size: int, world: World, accumulate: int) -> tuple[int, int]:
    """(samples per process, samples per micro-batch) of a global batch split evenly over
    the processes and, within each, into `accumulate` micro-batches."""
    per_process, rest = divmod(batch_size, world.size)
    if rest or per_process % accumulate:
        raise ValueError(
            f"batch_size {batch_size} must split evenly over {world.size} process(es) x {accumulate} "
            f"accumulation step(s)"
        )
    return per_process, per_process // accumulate


def process_share(world: World, local_batch: int) -> slice:
    """This process's rows of a tensor drawn for the whole global batch."""
    return slice(world.rank * local_batch, (world.rank + 1) * local_batch)


def wrap(model: nn.Module, world: World, device: torch.device) -> nn.Module:
    """The module that training calls: DistributedDataParallel under torchrun (it
    all-reduces the gradients), else the model itself."""
    if not world.distributed:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def micro_batches(accumulate: int, model: nn.Module, world: World):
    """(index, sync context) per micro-batch: DDP all-reduces only on the last."""
    for i in range(accumulate):
        sync = i == accumulate - 1 or not world.distributed
        yield i, (contextlib.nullcontext() if sync else model.no_sync())
