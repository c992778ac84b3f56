"""The evaluation engine: one loop over groups of conditions x batches, writing each cell to the store.

Data flows one way: dataset -> perturbation (on the model's device, per-sample generators) -> model -> counts ->
store. Every (model, dataset, perturbation, severity, params, metric, seed) cell is written as soon as its group has
seen the whole dataset; cells already in the store are skipped, so re-running a killed or finished evaluation
resumes it and never duplicates a row. Under ``torchrun`` each rank evaluates a contiguous shard of the data and the
(correct, count) pairs are summed, so every sample counts exactly once; only rank 0 writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustlab._amp import autocast, resolve_amp
from robustlab._checks import warn_if_training
from robustlab._parallel import dist_rank_world, reduce_sum, shard_indices
from robustlab.data._base import ImageDataset, iter_batches
from robustlab.engine.accuracy import _check_inputs, _model_device
from robustlab.engine.suite import Condition, Group, build_suite, check_conditions
from robustlab.metrics.perturbation import flip_fractions, top5_distances
from robustlab.progress import BatchDone, CellDone, GroupStarted, listening
from robustlab.store import Cell, ResultKey, Store

log = logging.getLogger(__name__)

Callback = Callable[[Any], None]


@dataclass(frozen=True)
class CellResult:
    """One evaluated (or resumed) cell."""

    key: ResultKey
    value: float
    n: int | None
    resumed: bool
    """True when the value was already in the store and nothing was computed."""


def _key(
    model_name: str, dataset: ImageDataset, condition: Condition, seed: int, metric: str = "accuracy"
) -> ResultKey:
    return ResultKey.create(
        model_name, dataset.name, metric, split=dataset.split, perturbation=condition.perturbation,
        severity=condition.severity, params=dict(condition.params), seed=seed if condition.seeded else 0,
    )  # fmt: skip


def _measure(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    condition: Condition,
    device: torch.device,
    dtype: torch.dtype | None,
    batch_size: int,
) -> torch.Tensor:
    """Per-batch sums of the condition's metrics: correct count, or per-sequence flip fraction and top-5 distance."""
    if condition.metrics == ("accuracy",):
        with autocast(device, dtype):
            logits = model(x)
        return (logits.argmax(dim=1) == labels).sum().to(torch.float64).view(1)
    n, t = x.shape[:2]
    frames = x.flatten(0, 1)
    # frames of a batch can be many (31 per image): forward them in chunks of the batch size
    chunks = []
    for i in range(0, len(frames), batch_size):
        with autocast(device, dtype):
            chunks.append(model(frames[i : i + batch_size]).float())
    logits = torch.cat(chunks).view(n, t, -1)
    noise = condition.params.get("compare") == "first"
    flips = flip_fractions(logits.argmax(dim=-1), noise=noise).sum()
    t5d = top5_distances(logits, noise=noise).sum() if logits.shape[-1] >= 5 else torch.tensor(float("nan"))
    return torch.stack([flips.double(), t5d.double().to(flips.device)])


def evaluate(
    model: nn.Module,
    dataset: ImageDataset,
    suite: str | Sequence[str] | Sequence[Group],
    *,
    store: Store | None = None,
    run_id: str | None = None,
    model_name: str | None = None,
    seed: int = 0,
    batch_size: int = 128,
    device: torch.device | str | None = None,
    amp: bool | str | None = None,
    profile: str | None = None,
    num_workers: int = 0,
    callback: Callback | None = None,
) -> list[CellResult]:
    """Evaluate ``model`` on ``dataset`` under every condition of ``suite``.

    Args:
        model: a classifier taking [0, 1] pixels (normalisation inside); its mode is left alone.
        dataset: the clean data, streamed in batches.
        suite: e.g. ``"clean,corruptions,noise"`` (see :mod:`robustlab.engine.suite`) or prebuilt groups.
        store: results store; with it, finished cells are skipped and new cells are written as they finish.
        run_id: the store run writing the cells (required with ``store``).
        model_name: the model's name in the store (default: ``model.name``).
        seed: seed of every perturbation's per-sample generators.
        batch_size: samples per forward pass.
        device: where to run (default: the model's device).
        amp: mixed precision (default: on for CUDA).
        profile: corruption parameter profile (default: from the image size).
        num_workers: data-loading worker processes (for image folders).
        callback: receives :mod:`robustlab.progress` events: :class:`~robustlab.progress.GroupStarted` (group k
            of N still to compute, with its batches), :class:`~robustlab.progress.BatchDone` (batches of this
            rank's shard), :class:`~robustlab.progress.CellDone`, and what runs inside a batch reports (AutoAttack's
            :class:`~robustlab.progress.StageDone`).

    Returns:
        One :class:`CellResult` per condition, in suite order (from the store for resumed cells).

    Raises:
        ValueError: bad model, dataset, suite, or a store without ``run_id``.
    """
    order = _check_inputs(model, dataset, None)
    if store is not None and run_id is None:
        raise ValueError("pass run_id (from store.start_run or store.run) together with store")
    name = model_name or getattr(model, "name", "") or type(model).__name__
    groups: list[Group]
    if not isinstance(suite, str) and suite and all(isinstance(g, Group) for g in suite):
        groups = [g for g in suite if isinstance(g, Group)]
    else:
        size = tuple(dataset.get_batch([0])[0].shape[-2:]) if len(dataset) else None
        groups = build_suite(suite, profile=profile, image_size=size)  # type: ignore[arg-type]
    warn_if_training(model, "evaluate")
    device = torch.device(device) if device is not None else _model_device(model)
    if _model_device(model) != device:
        model.to(device)
    dtype = resolve_amp(amp, device)
    emit = callback or (lambda event: None)
    rank, world = dist_rank_world()
    mine = [order[i] for i in shard_indices(len(order), rank, world)]
    n_batches = (len(mine) + batch_size - 1) // batch_size

    done: dict[ResultKey, tuple[float, int | None]] = {}
    if store is not None:
        # Store.cells, not a DataFrame: a cell stored without n reads back as None, not pd.NA
        done = {cell.key: (cell.value, cell.n) for cell in store.cells(model=name, dataset=dataset.name)}

    check_conditions([c for g in groups for c in g.conditions], model, dataset, device)

    # the groups this call computes, counted up front so that progress reads "group k of N"
    todo = [g for g in groups if any(_key(name, dataset, c, seed, m) not in done for c in g.conditions
                                     for m in c.metrics)]  # fmt: skip
    results: list[CellResult] = []
    with listening(callback):
        for group in groups:
            k = next((i for i, g in enumerate(todo, 1) if g is group), 0)
            _run_group(group, (k, len(todo)), results, done, model, dataset, name, seed, batch_size, device,
                       dtype, mine, n_batches, num_workers, store, run_id, rank, emit)  # fmt: skip
    position = {
        k: i
        for i, k in enumerate(_key(name, dataset, c, seed, m) for g in groups for c in g.conditions for m in c.metrics)
    }
    return sorted(results, key=lambda r: position[r.key])


def _number(value: Any) -> str:
    # radii read as the user wrote them: 8/255, not 0.0313725
    if isinstance(value, float) and not value.is_integer() and abs(value * 255 - round(value * 255)) < 1e-6:
        return f"{round(value * 255)}/255"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _detail(group: Group) -> str:
    """What a group holds, for progress: its severities, or its one setting, or how many settings."""
    severities = sorted({c.severity for c in group.conditions if c.severity})
    if severities:
        if len(severities) == 1:
            return f"severity {severities[0]}"
        return f"severities {severities[0]}-{severities[-1]}" if severities == list(
            range(severities[0], severities[-1] + 1)) else "severities " + ",".join(map(str, severities))  # fmt: skip
    if len(group.conditions) == 1:
        return ",".join(f"{k}={_number(v)}" for k, v in group.conditions[0].params.items())
    return f"{len(group.conditions)} settings"


def _run_group(
    group: Group, position: tuple[int, int], results: list[CellResult], done: dict[ResultKey, tuple[float, int | None]],
    model: nn.Module, dataset: ImageDataset, name: str, seed: int, batch_size: int, device: torch.device,
    dtype: torch.dtype | None, mine: list[int], n_batches: int, num_workers: int, store: Store | None,
    run_id: str | None, rank: int, emit: Callable[[Any], None],
) -> None:  # fmt: skip
    """Compute one group's pending cells in one pass over the data and store them (the loop body of evaluate)."""
    # one key per (condition, metric); a condition is pending when any of its cells is missing
    keyed = [(c, [_key(name, dataset, c, seed, m) for m in c.metrics]) for c in group.conditions]
    pending = [(c, ks) for c, ks in keyed if any(k not in done for k in ks)]
    for _, ks in keyed:
        results.extend(CellResult(k, done[k][0], done[k][1], resumed=True) for k in ks if k in done)
    if not pending:
        return
    source = dataset
    if group.dataset is not None:
        source = group.dataset
        if len(source) != len(dataset):
            raise ValueError(
                f"{group.name}: {len(source)} samples but the clean dataset has {len(dataset)}; pre-made "
                "corrupted data must hold the same samples in the same order"
            )
    emit(GroupStarted(index=position[0], total=position[1], name=group.name, detail=_detail(group),
                      batches=n_batches))  # fmt: skip
    sums = [torch.zeros(len(c.metrics), dtype=torch.float64, device=device) for c, _ in pending]
    count = 0
    for b, batch in enumerate(iter_batches(source, batch_size, indices=mine, num_workers=num_workers)):
        images = batch.images.to(device, non_blocking=True)
        labels = batch.labels.to(device, non_blocking=True)
        for j, (condition, _) in enumerate(pending):
            if condition.measure is not None:  # attacks and explainers need gradients
                sums[j] += condition.measure(model, images, labels, batch.indices, seed).to(sums[j])
                continue
            with torch.inference_mode():
                x = condition.images(images, batch.indices, seed)
                sums[j] += _measure(model, x, labels, condition, device, dtype, batch_size)
        count += len(batch.indices)
        emit(BatchDone(done=b + 1, total=n_batches))
    totals = reduce_sum(torch.cat([*(v.cpu() for v in sums), torch.tensor([float(count)], dtype=torch.float64)]))
    total = int(totals[-1])
    cells: list[Cell] = []
    offset = 0
    for condition, ks in pending:
        part = totals[offset : offset + len(ks)]
        if condition.finalize is not None:
            values = [float(v) for v in condition.finalize(part, total)]
        else:
            values = [float(v) / total if total else float("nan") for v in part]
        cells.extend(Cell(k, value, total) for k, value in zip(ks, values, strict=True) if k not in done)
        offset += len(ks)
    if store is not None and rank == 0:
        store.add(run_id, cells)  # type: ignore[arg-type]
    for cell in cells:
        done[cell.key] = (cell.value, cell.n)
        emit(CellDone(key=cell.key, value=cell.value, n=cell.n))
        results.append(CellResult(cell.key, cell.value, cell.n, resumed=False))
