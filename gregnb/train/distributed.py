"""Data-parallel training under ``torchrun``: who this process is, its shard of a batch, the mean loss."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["dist_info", "wrap", "shard", "mean_over_processes"]


def dist_info() -> tuple[int, int]:
    """(rank, world size): from torch.distributed when a process group is up (torchrun), else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def wrap(model: nn.Module, dev: torch.device, world: int) -> nn.Module:
    """The module the training steps call: the model itself, or DistributedDataParallel around it."""
    if world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)


def shard(idx: torch.Tensor | None, rank: int, world: int) -> torch.Tensor | None:
    """This process's contiguous part of a global batch of indices (a tail batch may split unevenly)."""
    return idx if idx is None or world == 1 else idx.chunk(world)[rank]


def mean_over_processes(value: torch.Tensor, world: int) -> torch.Tensor:
    """The mean of a scalar over all processes (itself in a single process)."""
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(value)
        value /= world
    return value
