"""Evaluation sharding across ``torchrun`` processes: contiguous shards, no padding, summed counts.

``DistributedSampler`` pads with duplicate samples so that every rank gets the same count; for evaluation
that double-counts samples. Here each rank evaluates a contiguous slice (sizes differ by at most one) and
the ranks sum their counts, so the totals are exact.

The engine reads the process group straight from :mod:`torch.distributed` rather than from
:mod:`robustlab.train.distributed`, because training depends on the engine (validation), not the other
way round.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def shard_indices(n: int, rank: int, world_size: int) -> range:
    """Positions ``[start, stop)`` that ``rank`` evaluates out of ``n``: contiguous, no padding, no overlap.

    The first ``n % world_size`` ranks get one extra position, so shard sizes differ by at most one and the
    shards, in rank order, tile ``range(n)`` exactly.

    Args:
        n: number of items (>= 0).
        rank: this process's rank in ``[0, world_size)``.
        world_size: number of processes (>= 1).

    Returns:
        A ``range`` of positions (possibly empty when ``n < world_size``).

    Raises:
        ValueError: negative ``n``, ``world_size < 1`` or ``rank`` outside ``[0, world_size)``.

    Example:
        >>> [shard_indices(5, r, 2) for r in range(2)]
        [range(0, 3), range(3, 5)]
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, {world_size}), got {rank}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def dist_rank_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the current process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def reduce_sum(values: Tensor) -> Tensor:
    """Sum ``values`` over ranks into a copy on the values' device; without a process group, ``values``."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    # nccl reduces CUDA tensors only; gloo reduces CPU tensors
    nccl = dist.get_backend() == "nccl"
    work = values.to(torch.device("cuda", torch.cuda.current_device()) if nccl else "cpu", copy=True)
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(values.device)
