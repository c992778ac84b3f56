"""Data-parallel training under ``torchrun``: process group, DDP wrapping and per-rank training shards.

Outside ``torchrun`` every helper is a cheap no-op (rank 0 of a world of 1), so :func:`robustlab.train.fit`
calls them unconditionally. The rule for the process group is "whoever creates it destroys it": ``fit``
destroys a group only if ``fit`` created it, so a script that calls :func:`init_distributed` itself can
still run a sharded evaluation after training.

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
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from robustlab.rng import make_generator

log = logging.getLogger(__name__)


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
