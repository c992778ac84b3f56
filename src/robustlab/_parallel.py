"""Process-group helpers shared by training and evaluation: rank, world size, sums over ranks, shards.

Layer 1 (no robustlab imports but :mod:`robustlab.rng`), so that :mod:`robustlab.train.distributed` (process group
set-up, DDP wrapping) and :mod:`robustlab.engine` (sharded evaluation) use one implementation without importing
each other. Outside ``torchrun`` every helper is a cheap no-op (rank 0 of a world of 1).

Training shards with padding (:func:`shard_permutation`: DDP needs the same number of steps on every rank);
evaluation shards without (:func:`shard_indices`: ``DistributedSampler``'s duplicates would be counted twice),
and the ranks sum their counts (:func:`reduce_sum`), so the totals are exact.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor

from robustlab.rng import make_generator

__all__ = [
    "all_reduce_sum",
    "dist_rank_world",
    "is_distributed",
    "launched_by_torchrun",
    "rank",
    "reduce_sum",
    "shard_indices",
    "shard_permutation",
    "world_size",
]


def launched_by_torchrun() -> bool:
    """True when this process is one of several started by ``torchrun`` (``WORLD_SIZE > 1``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_distributed() -> bool:
    """True when a process group is initialised in this process."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank: from the process group, else torchrun's ``RANK`` (so rank-0-only work such as
    saving and printing stays on one process after the group is gone), else 0."""
    if is_distributed():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if launched_by_torchrun() else 0


def world_size() -> int:
    """Number of processes in the process group; 1 without one."""
    return dist.get_world_size() if is_distributed() else 1


def dist_rank_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the current process group, ``(0, 1)`` without one."""
    if is_distributed():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def reduce_sum(values: Tensor) -> Tensor:
    """Sum ``values`` over ranks into a copy on the values' device; without a process group, ``values``."""
    if not is_distributed():
        return values
    work = values.to(_backend_device(), copy=True)
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(values.device)


def _backend_device() -> torch.device:
    # nccl reduces CUDA tensors only; gloo is happiest with CPU tensors
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over all ranks, in place, and return it; the identity without a process group.

    The tensor may live on any device: it is reduced on the backend's device and copied back.
    """
    if not is_distributed():
        return tensor
    work = tensor.to(_backend_device())
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    if work is not tensor:
        tensor.copy_(work)
    return tensor


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


def shard_permutation(n: int, *, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """This rank's training indices for one epoch: a seeded permutation dealt round-robin, padded.

    Every rank draws the same permutation from ``(seed, epoch)``, pads it by wrapping around to a multiple
    of ``world_size`` (DDP needs the same number of steps on every rank) and takes every
    ``world_size``-th entry from position ``rank``. Padding repeats at most ``world_size - 1`` samples; it
    is for training only — evaluation shards without padding (:func:`robustlab.engine.shard_indices`).

    Args:
        n: dataset size (>= 1).
        seed: run seed.
        epoch: epoch index; each epoch gets a fresh order.
        rank: this process's rank in ``[0, world_size)``.
        world_size: number of processes (>= 1).

    Returns:
        ``ceil(n / world_size)`` dataset indices.

    Raises:
        ValueError: ``n < 1``, ``world_size < 1`` or ``rank`` outside ``[0, world_size)``.
    """
    if n < 1:
        raise ValueError(f"cannot shard an empty dataset (n={n})")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"rank must lie in [0, world_size) with world_size >= 1, got rank={rank}, world_size={world_size}"
        )
    order = torch.randperm(n, generator=make_generator(seed, "shuffle", epoch)).tolist()
    total = -(-n // world_size) * world_size
    order += (order * (total // n + 1))[: total - n]
    return order[rank:total:world_size]
