"""Distributed helpers: torchrun environment, process groups, reductions.

One process per device. Under torchrun, RANK/WORLD_SIZE/LOCAL_RANK come from the
environment; without it everything runs as rank 0 of 1 and no group is created.
gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def context_from_environment(device: str | None = None) -> DistributedContext:
    """Read torchrun's variables and join the process group if there is one.

    Args:
        device: "cpu", "cuda" or None (CUDA when available). Under torchrun each
            process takes the CUDA device of its LOCAL_RANK.

    Raises:
        vidpose.runtime.InputError: a device torch does not know or cannot use.
    """
    from vidpose.runtime import resolve_device

    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    # a name torch does not know, or CUDA without a device: a clear error, not a silent
    # CPU run or a torch traceback
    use_cuda = resolve_device(device).startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistributedContext(rank, world_size, local_rank, chosen)


def shard_from_environment() -> tuple[int, int]:
    """(index, count) of this process among torchrun's processes; (0, 1) without torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def all_reduce_mean(value: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    if not context.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / context.world_size


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        dist.barrier()


def broadcast_object(value, context: DistributedContext):
    """Rank 0's ``value`` on every rank."""
    if not context.enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def shutdown(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
