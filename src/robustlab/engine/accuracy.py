"""Clean accuracy over a dataset: streamed in batches, sharded across ``torchrun`` ranks, reduced exactly."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from robustlab._amp import autocast, resolve_amp
from robustlab._checks import warn_if_training
from robustlab._parallel import dist_rank_world, reduce_sum, shard_indices
from robustlab.data._base import Batch, ImageDataset, iter_batches
from robustlab.models.custom import warn_if_unwrapped

Callback = Callable[[dict[str, Any]], None]

Perturb = Callable[[Tensor, Tensor], Tensor]
"""``perturb(images, indices) -> images``: applied to each batch on the device before the forward; the dataset
``indices`` (CPU int64) let it derive per-sample generators (:func:`robustlab.rng.sample_generators`)."""


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def _check_inputs(model: object, dataset: object, indices: Sequence[int] | None) -> list[int]:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module (a Classifier), got {type(model).__name__}")
    warn_if_unwrapped(model, "evaluate")  # a plain module gets [0, 1] pixels it may not expect: say so, once
    if not (hasattr(dataset, "get_batch") and hasattr(dataset, "__len__")):
        raise ValueError(
            f"dataset must be a robustlab ImageDataset (wrap tensors in ArrayDataset), got {type(dataset).__name__}"
        )
    n = len(dataset)
    order = list(range(n)) if indices is None else [int(i) for i in indices]
    if order and (min(order) < 0 or max(order) >= n):
        raise ValueError(f"indices must lie in [0, {n}) for a dataset of {n} samples, got [{min(order)}, {max(order)}]")
    return order


def _predict_batches(
    model: nn.Module,
    dataset: ImageDataset,
    order: list[int],
    batch_size: int,
    device: torch.device | str | None,
    amp: bool | str | None,
    callback: Callback | None,
    perturb: Perturb | None,
) -> Iterator[tuple[Batch, Tensor]]:
    """Yield ``(batch, predictions on device)`` for this rank's contiguous shard of ``order``."""
    rank, world = dist_rank_world()
    mine = [order[i] for i in shard_indices(len(order), rank, world)]
    device = torch.device(device) if device is not None else _model_device(model)
    if _model_device(model) != device:
        model.to(device)
    dtype = resolve_amp(amp, device)
    done = 0
    for batch in iter_batches(dataset, batch_size, indices=mine):
        # contexts per batch, not around the loop: a generator must not leave them active while suspended
        with torch.inference_mode(), autocast(device, dtype):
            images = batch.images.to(device, non_blocking=True)
            if perturb is not None:
                perturbed = perturb(images, batch.indices)
                if perturbed.shape != images.shape:
                    want, got = tuple(images.shape), tuple(perturbed.shape)
                    raise ValueError(f"perturb must return images of shape {want}, got {got}")
                images = perturbed
            predictions = model(images).argmax(dim=1)
        done += len(batch.indices)
        if callback is not None:
            callback({"kind": "eval_batch", "done": done, "total": len(mine)})
        yield batch, predictions


def evaluate_accuracy(
    model: nn.Module,
    dataset: ImageDataset,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    amp: bool | str | None = None,
    callback: Callback | None = None,
    indices: Sequence[int] | None = None,
    perturb: Perturb | None = None,
) -> tuple[int, int]:
    """Count correct top-1 predictions of ``model`` over ``dataset``.

    The model's mode is left alone (contract 5); a model in train mode triggers a warning. Under
    ``torchrun`` each rank evaluates only its contiguous shard (no padding, so nothing is counted twice) and
    the ``(correct, count)`` pairs are summed, so every rank returns the global totals.

    Args:
        model: classifier taking [0, 1] pixels.
        dataset: samples to evaluate, streamed in batches.
        batch_size: samples per forward pass.
        device: where to run; None uses the model's device. A model elsewhere is moved there (in place).
        amp: mixed precision; None = bf16/fp16 autocast on CUDA, off on CPU (see :func:`resolve_amp`).
        callback: called with ``{"kind": "eval_batch", "done", "total"}`` after each batch (this rank's
            counts).
        indices: dataset indices to evaluate (default: all).
        perturb: ``perturb(images, indices) -> images`` applied to each batch before the forward (e.g.
            corruption with per-sample generators); None evaluates clean images.

    Returns:
        ``(correct, count)`` over all ranks; accuracy is ``correct / count``.

    Raises:
        ValueError: not a module / dataset, indices out of range, bad ``batch_size`` or ``amp``, or a
            ``perturb`` that changes the batch shape.

    Example:
        >>> correct, count = evaluate_accuracy(model, test_set)  # doctest: +SKIP
    """
    order = _check_inputs(model, dataset, indices)
    warn_if_training(model, "evaluate_accuracy")
    device = torch.device(device) if device is not None else _model_device(model)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    count = 0
    batches = _predict_batches(model, dataset, order, batch_size, device, amp, callback, perturb)
    for batch, predictions in batches:
        # summed on the device; one host sync at the end instead of one per batch
        correct += (predictions == batch.labels.to(device, non_blocking=True)).sum()
        count += len(batch.indices)
    totals = reduce_sum(torch.stack([correct.cpu(), torch.tensor(count, dtype=torch.int64)]))
    return int(totals[0]), int(totals[1])


def predict(
    model: nn.Module,
    dataset: ImageDataset,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    amp: bool | str | None = None,
    callback: Callback | None = None,
    indices: Sequence[int] | None = None,
    perturb: Perturb | None = None,
) -> tuple[Tensor, Tensor]:
    """Top-1 predictions of ``model`` for this rank's samples of ``dataset``.

    Without a process group that is every sample; under ``torchrun`` it is this rank's shard (see
    :func:`evaluate_accuracy`) and nothing is gathered.

    Args:
        model: classifier taking [0, 1] pixels.
        dataset: samples to classify.
        batch_size: samples per forward pass.
        device: where to run; None uses the model's device.
        amp: mixed precision (see :func:`resolve_amp`).
        callback: progress events as in :func:`evaluate_accuracy`.
        indices: dataset indices to classify (default: all).
        perturb: applied to each batch before the forward, as in :func:`evaluate_accuracy`.

    Returns:
        ``(indices, predictions)``: the dataset indices this rank classified (as batches report them: a
        ``Subset`` reports its parent's indices) and the predicted classes, on CPU.

    Shape:
        both ``(M,)`` int64, ``M`` = this rank's sample count.

    Raises:
        ValueError: as :func:`evaluate_accuracy`.
    """
    order = _check_inputs(model, dataset, indices)
    warn_if_training(model, "predict")
    seen: list[Tensor] = [torch.empty(0, dtype=torch.int64)]
    predicted: list[Tensor] = [torch.empty(0, dtype=torch.int64)]
    batches = _predict_batches(model, dataset, order, batch_size, device, amp, callback, perturb)
    for batch, predictions in batches:
        seen.append(batch.indices)
        predicted.append(predictions.cpu())
    return torch.cat(seen), torch.cat(predicted)
