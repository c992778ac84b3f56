"""Data-parallel training under ``torchrun``: process group, DDP wrapping and per-rank training shards.

Outside ``torchrun`` every helper is a cheap no-op (rank 0 of a world of 1), so :func:`robustlab.train.fit`
calls them unconditionally. Rank, world size, sums over ranks and the training shards live in
:mod:`robustlab._parallel`, shared with the evaluation engine, and are re-exported here. The rule for the process
group is "whoever creates it destroys it": ``fit`` destroys a group only if ``fit`` created it, so a script that
calls :func:`init_distributed` itself can still run a sharded evaluation after training.

Example (``torchrun --nproc_per_node=2 train.py``)::

    device = init_distributed()          # gloo on CPU, nccl on CUDA (cuda:LOCAL_RANK)
    fit(model, train_data, epochs=2, lr=0.1, device=device)
    correct, count = evaluate_accuracy(model, test_data)   # global totals on every rank
    destroy_distributed()
"""

from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from robustlab._parallel import (
    all_reduce_sum,
    is_distributed,
    launched_by_torchrun,
    rank,
    shard_permutation,
    world_size,
)

__all__ = [
    "all_reduce_sum",
    "barrier",
    "broadcast_buffers",
    "destroy_distributed",
    "init_distributed",
    "is_distributed",
    "launched_by_torchrun",
    "rank",
    "resolve_device",
    "shard_permutation",
    "unwrap_model",
    "world_size",
    "wrap_model",
]

log = logging.getLogger(__name__)


def resolve_device(device: torch.device | str | None = None) -> torch.device:
    """The device this process should train on.

    None picks CUDA when available, else CPU. Under ``torchrun`` a CUDA device without an index becomes
    ``cuda:LOCAL_RANK`` so that each process drives its own GPU.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) if launched_by_torchrun() else 0)
    return device


def init_distributed(device: torch.device | str | None = None) -> torch.device:
    """Join the ``torchrun`` process group (when launched by torchrun and not joined yet).

    The backend follows the device: nccl for CUDA, gloo for CPU. Rendezvous details (``MASTER_ADDR``,
    ``RANK``, ...) come from the environment torchrun sets.

    Args:
        device: requested device; see :func:`resolve_device`.

    Returns:
        The resolved device (``cuda:LOCAL_RANK`` under torchrun with CUDA).
    """
    device = resolve_device(device)
    if launched_by_torchrun() and not is_distributed():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
        log.info("joined process group: rank %d of %d (%s)", rank(), world_size(), backend)
    return device


def destroy_distributed() -> None:
    """Leave and destroy the process group, if one exists."""
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank; a no-op without a process group."""
    if is_distributed():
        dist.barrier()


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Wrap ``model`` in :class:`DistributedDataParallel` when a process group exists, else return it.

    DDP broadcasts rank 0's parameters and buffers at construction, so every rank starts from the same
    weights.
    """
    if not is_distributed():
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def broadcast_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every rank; a no-op without a group.

    DDP broadcasts buffers at the *start* of each forward, so after the last training step every rank
    holds the statistics of its own last batch. Evaluating or saving then needs one more broadcast, or the
    replicas would disagree.
    """
    if not is_distributed():
        return
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (loss functions reach probes and submodules through it)."""
    return model.module if isinstance(model, DistributedDataParallel) else model
