"""The one training loop, :func:`fit`: AMP, checkpoint + resume, a time budget, DDP under torchrun."""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab._amp import autocast, resolve_amp
from robustlab.data._base import ImageDataset, iter_batches
from robustlab.engine.accuracy import evaluate_accuracy
from robustlab.progress import EpochDone, EpochStarted, TrainStep
from robustlab.rng import make_generator
from robustlab.train.checkpoint import get_rng_state, load_checkpoint, save_checkpoint, set_rng_state
from robustlab.train.config import FitConfig
from robustlab.train.distributed import (
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    destroy_distributed,
    init_distributed,
    is_distributed,
    launched_by_torchrun,
    rank,
    shard_permutation,
    world_size,
    wrap_model,
)

log = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Tensor, Tensor], "Tensor | tuple[Tensor, Tensor | None]"]
"""``loss_fn(model, images, labels)`` -> scalar loss, or ``(loss, logits)`` to report train accuracy (logits None:
no accuracy for that batch)."""

Augment = Callable[..., Tensor]
"""``augment(images, *, generator) -> images``, batched, same shape, values in [0, 1]."""

# receives EpochStarted, TrainStep and EpochDone; Any, so callbacks written for the old dict events still type-check
Callback = Callable[[Any], None]


@dataclass
class FitResult:
    """What :func:`fit` did.

    ``history`` holds one dict per completed epoch with keys ``epoch`` (1-based), ``train_loss``,
    ``train_acc`` (None when ``loss_fn`` returns no logits), ``val_acc`` (None without ``val_data``), ``lr``
    (of the epoch's last step) and ``seconds``. Under torchrun losses and accuracies cover all ranks.
    """

    epochs: int
    """Epochs completed, counting those of the run that was resumed."""
    steps: int
    """Optimiser steps taken, counting those of the run that was resumed."""
    train_loss: float
    """Mean training loss of the last epoch (of the partial epoch when ``max_time`` stopped the run)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Per-epoch metrics, see the class docstring."""
    timed_out: bool = False
    """True when ``max_time`` stopped training before ``epochs`` were done."""
    checkpoint: str | None = None
    """Path of the last checkpoint written, if any."""


def cross_entropy_loss(model: nn.Module, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """The default training loss: mean cross-entropy of ``model(images)``.

    Returns:
        ``(loss, logits)``; logits let :func:`fit` report train accuracy.

    Shape:
        images ``(N, C, H, W)``, labels ``(N,)`` -> loss ``()``, logits ``(N, K)``.
    """
    logits = model(images)
    return F.cross_entropy(logits, labels), logits


def lr_at(step: int, *, lr: float, warmup: int, total: int, schedule: str) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warm-up, then constant or cosine to zero.

    A pure function of the step, so the step counter is the whole scheduler state a checkpoint needs.
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "constant":
        return lr
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def create_optimizer(model: nn.Module, config: FitConfig) -> torch.optim.Optimizer:
    """SGD or AdamW over the trainable parameters; no weight decay on 1-D tensors (biases, norm weights).

    Raises:
        ValueError: the model has no parameter with ``requires_grad``.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (every parameter has requires_grad=False)")
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)


def _check_dataset(data: object, name: str) -> None:
    if not (hasattr(data, "get_batch") and hasattr(data, "__len__")):
        raise ValueError(
            f"{name} must be a robustlab ImageDataset (wrap tensors in ArrayDataset), got {type(data).__name__}"
        )
    if len(data) == 0:
        raise ValueError(f"{name} is empty")


def _time_is_up(started: float, max_time: float) -> bool:
    up = torch.tensor([float(time.monotonic() - started >= max_time)])
    # every rank must stop after the same step, or the others wait forever in DDP's gradient all-reduce
    return bool(all_reduce_sum(up).item() > 0)


def fit(
    model: nn.Module,
    train_data: ImageDataset,
    *,
    val_data: ImageDataset | None = None,
    epochs: int,
    lr: float,
    batch_size: int = 128,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    warmup_epochs: float = 0.0,
    warmup_steps: int | None = None,
    schedule: str = "cosine",
    grad_clip: float | None = None,
    amp: bool | str | None = None,
    drop_last: bool = False,
    loss_fn: LossFn | None = None,
    augment: Augment | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    seed: int = 0,
    device: torch.device | str | None = None,
    callback: Callback | None = None,
    max_time: float | None = None,
    num_workers: int = 0,
) -> FitResult:
    """Train ``model`` on ``train_data``; optionally validate after every epoch.

    The model is moved to ``device``, switched to train mode only inside the loop and always left in eval
    mode (also when an exception escapes). Shuffling and augmentation draw from generators derived from
    ``(seed, epoch, batch)`` — never from the global RNG — so a run is reproducible and a resumed run
    continues exactly where the interrupted one stopped. Under ``torchrun`` (``WORLD_SIZE > 1``) the process
    group is joined (gloo on CPU, nccl on CUDA), the model is wrapped in DistributedDataParallel, each rank
    trains on its shard of every epoch's permutation and only rank 0 writes checkpoints.

    Args:
        model: classifier taking [0, 1] pixels (e.g. a robustlab ``Classifier``); trained in place.
        train_data: training samples.
        val_data: samples whose accuracy is measured after every epoch (sharded under torchrun).
        epochs, lr, batch_size, optimizer, momentum, weight_decay, warmup_epochs, warmup_steps, schedule,
            grad_clip, amp, drop_last, checkpoint, resume, seed, max_time, num_workers: see
            :class:`FitConfig`, which documents and checks each.
        loss_fn: ``loss_fn(model, images, labels)`` returning the loss, or ``(loss, logits)`` to report train
            accuracy; default :func:`cross_entropy_loss`. Under torchrun ``model`` is the DDP wrapper (its
            ``.module`` is the classifier); forward through the wrapper so gradients are synchronised. A loss
            with ``state_dict()`` / ``load_state_dict()`` (e.g. AFAT's, which trains its own corruption model)
            has that state written into every checkpoint and restored on resume. A loss with a ``loss_scale``
            attribute is told, before each backward pass, the factor that fp16 AMP's gradient scaler puts on the
            gradients of that pass (a 0-dim tensor; 1 without a scaler), for gradients it uses itself.
        augment: ``augment(images, *, generator)`` applied to each batch on the device, e.g.
            :func:`robustlab.train.random_crop_flip`.
        device: None picks CUDA when available (``cuda:LOCAL_RANK`` under torchrun), else CPU.
        callback: receives the typed progress events of :mod:`robustlab.progress`: :class:`EpochStarted`
            (epoch, epochs), :class:`TrainStep` (epoch, step, total, loss, lr) and :class:`EpochDone` (the history
            entry). They read like the dicts sent before (``event["kind"] == "step"``, ``event["loss"]``). Under
            torchrun every rank calls its callback; filter with :func:`robustlab.train.distributed.rank`.

    Returns:
        A :class:`FitResult`.

    Shape:
        batches of ``train_data`` / ``val_data``: images ``(B, C, H, W)`` float in [0, 1], labels ``(B,)``
        int64; ``model(images)`` gives logits ``(B, K)``.

    Raises:
        ValueError: an invalid setting (the message names it), an unusable dataset or model, or a checkpoint
            that cannot be continued with this configuration.
        FileNotFoundError: ``resume=True`` but ``checkpoint`` does not exist.

    Example:
        >>> result = fit(model, train_set, val_data=test_set, epochs=30, lr=0.1,
        ...              augment=random_crop_flip, checkpoint="runs/cnn.pt")  # doctest: +SKIP
    """
    started = time.monotonic()
    cfg = FitConfig(
        epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, momentum=momentum,
        weight_decay=weight_decay, warmup_epochs=warmup_epochs, warmup_steps=warmup_steps, schedule=schedule,
        grad_clip=grad_clip, amp=amp, drop_last=drop_last, seed=seed, resume=resume,
        checkpoint=checkpoint,  # type: ignore[arg-type]  # FitConfig takes a path-like and stores it as text
        max_time=max_time, num_workers=num_workers,
    )  # fmt: skip
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_dataset(train_data, "train_data")
    if val_data is not None:
        _check_dataset(val_data, "val_data")
    for name, fn in (("loss_fn", loss_fn), ("augment", augment), ("callback", callback)):
        if fn is not None and not callable(fn):
            raise ValueError(f"{name} must be callable or None, got {type(fn).__name__}")
    loss_fn = loss_fn or cross_entropy_loss

    # whoever creates the process group destroys it: a script that joined it itself keeps it for evaluation
    created_group = launched_by_torchrun() and not is_distributed()
    device = init_distributed(device)
    try:
        return _fit(model, train_data, val_data, cfg, loss_fn, augment, callback, device, started)
    finally:
        model.eval()
        if created_group:
            destroy_distributed()


def _fit(
    model: nn.Module,
    train_data: ImageDataset,
    val_data: ImageDataset | None,
    cfg: FitConfig,
    loss_fn: LossFn,
    augment: Augment | None,
    callback: Callback | None,
    device: torch.device,
    started: float,
) -> FitResult:
    """The loop of :func:`fit`, after validation and process-group setup."""
    me, world = rank(), world_size()
    model.to(device)
    amp_dtype = resolve_amp(cfg.amp, device)
    opt = create_optimizer(model, cfg)
    # loss scaling only matters for fp16, whose range underflows small gradients; bf16 has float32's range
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    net = wrap_model(model, device)

    per_rank = -(-len(train_data) // world)
    steps_per_epoch = per_rank // cfg.batch_size if cfg.drop_last else -(-per_rank // cfg.batch_size)
    if steps_per_epoch == 0:
        raise ValueError(
            f"drop_last=True leaves no batch: {per_rank} samples per process < batch_size={cfg.batch_size}"
        )
    total_steps = cfg.epochs * steps_per_epoch
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else round(cfg.warmup_epochs * steps_per_epoch)

    def lr_of(step: int) -> float:
        return lr_at(step, lr=cfg.lr, warmup=warmup, total=total_steps, schedule=cfg.schedule)

    def save(epoch: int, batch: int, step: int, totals: list[float], seconds: float) -> None:
        if cfg.checkpoint is None or me != 0:
            return
        save_checkpoint(cfg.checkpoint, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
            "epoch": epoch, "batch": batch, "step": step, "totals": totals, "seconds": seconds,
            "history": history, "rng": get_rng_state(), "config": cfg.to_dict(),
            "world_size": world, "steps_per_epoch": steps_per_epoch,
            "loss_state": loss_fn.state_dict() if _stateful(loss_fn) else None,
        })  # fmt: skip

    # where to start: (epoch, batch within it, global step), plus the interrupted epoch's running totals
    start_epoch, start_batch, step, history = 0, 0, 0, []
    carried, carried_seconds = [0.0, 0.0, 0.0], 0.0
    if cfg.resume:
        state = _load_for_resume(str(cfg.checkpoint), cfg, world, steps_per_epoch)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if scaler.is_enabled() and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        _restore_loss_state(loss_fn, state.get("loss_state"), str(cfg.checkpoint))
        start_epoch, start_batch, step = state["epoch"], state["batch"], state["step"]
        history = state["history"]
        # the saved totals are already summed over ranks: count them once
        carried = [float(v) for v in state["totals"]] if me == 0 else carried
        carried_seconds = float(state["seconds"])
        log.info("resuming %s at epoch %d, batch %d", cfg.checkpoint, start_epoch + 1, start_batch)

    last_loss = history[-1]["train_loss"] if history else math.nan
    for epoch in range(start_epoch, cfg.epochs):
        net.train()  # every epoch, because validation below switches to eval; net may be a DDP wrapper
        epoch_started = time.monotonic() - carried_seconds
        if callback is not None:
            callback(EpochStarted(epoch=epoch + 1, epochs=cfg.epochs))
        # [loss sum, correct, count] on the device: no host sync per step
        totals = torch.tensor(carried, dtype=torch.float64, device=device)
        reports_logits = False
        order = shard_permutation(len(train_data), seed=cfg.seed, epoch=epoch, rank=me, world_size=world)
        todo = order[start_batch * cfg.batch_size :]  # a resumed epoch skips the batches already done
        batches = iter_batches(train_data, cfg.batch_size, indices=todo, num_workers=cfg.num_workers)
        for b, batch in enumerate(batches, start=start_batch):
            if b == steps_per_epoch:  # drop_last: the short final batch
                break
            images = batch.images.to(device, non_blocking=True)
            labels = batch.labels.to(device, non_blocking=True)
            if augment is not None:
                # a generator per (epoch, batch, rank): a resumed run redraws exactly what it would have drawn
                images = augment(images, generator=make_generator(cfg.seed, "augment", epoch, b, me))
            lr = lr_of(step)
            for group in opt.param_groups:
                group["lr"] = lr

            with autocast(device, amp_dtype):
                out = loss_fn(net, images, labels)
            loss, logits = out if isinstance(out, tuple) else (out, None)
            if loss.ndim != 0:
                raise ValueError(f"loss_fn must return a scalar loss, got shape {tuple(loss.shape)}")
            opt.zero_grad(set_to_none=True)
            if hasattr(loss_fn, "loss_scale"):  # e.g. AFAT's corruption model, which steps inside this backward
                loss_fn.loss_scale = scaler.scale(torch.ones((), device=loss.device))  # no host sync
            scaler.scale(loss).backward()
            if cfg.grad_clip is not None:
                scaler.unscale_(opt)  # clip the true gradients, not the fp16-scaled ones
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            step += 1

            totals[0] += loss.detach().double() * len(labels)
            if logits is not None:
                reports_logits = True
                totals[1] += (logits.detach().argmax(dim=1) == labels).sum()
            totals[2] += len(labels)
            if callback is not None:
                callback(TrainStep(epoch=epoch + 1, step=step, total=total_steps, loss=float(loss.detach()), lr=lr))
            if cfg.max_time is not None and _time_is_up(started, cfg.max_time):
                broadcast_buffers(model)
                summed = all_reduce_sum(totals).tolist()
                save(epoch, b + 1, step, summed, time.monotonic() - epoch_started)
                barrier()
                log.info("max_time=%ss spent: stopped after step %d", cfg.max_time, step)
                partial_loss = summed[0] / max(summed[2], 1.0)
                return FitResult(
                    epochs=len(history), steps=step, train_loss=partial_loss, history=history,
                    timed_out=True, checkpoint=cfg.checkpoint,
                )  # fmt: skip

        broadcast_buffers(model)  # replicas leave the epoch identical, for validation and the checkpoint
        loss_sum, correct, count = all_reduce_sum(totals).tolist()
        last_loss = loss_sum / count
        if not math.isfinite(last_loss):
            warnings.warn(
                f"train loss is {last_loss} in epoch {epoch + 1}: training diverged; "
                "lower lr, add warm-up or set grad_clip",
                stacklevel=3,
            )
        val_acc = None
        if val_data is not None:
            model.eval()
            val_correct, val_count = evaluate_accuracy(
                model, val_data, batch_size=cfg.batch_size, device=device, amp=cfg.amp
            )
            val_acc = val_correct / val_count
        history.append({
            "epoch": epoch + 1, "train_loss": last_loss,
            "train_acc": correct / count if reports_logits else None, "val_acc": val_acc,
            "lr": lr_of(step - 1), "seconds": time.monotonic() - epoch_started,
        })  # fmt: skip
        if me == 0:
            log.info("epoch %d/%d: %s", epoch + 1, cfg.epochs, history[-1])
        save(epoch + 1, 0, step, [0.0, 0.0, 0.0], 0.0)
        if callback is not None:
            callback(EpochDone(**history[-1]))
        start_batch, carried, carried_seconds = 0, [0.0, 0.0, 0.0], 0.0

    barrier()  # rank 0's last checkpoint is complete before any rank moves on
    return FitResult(epochs=len(history), steps=step, train_loss=last_loss, history=history, checkpoint=cfg.checkpoint)


class _StatefulLoss(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


def _stateful(loss_fn: object) -> TypeGuard[_StatefulLoss]:
    """A loss that carries training state (AFAT's corruption model and its optimiser) exposes it like a module."""
    return callable(getattr(loss_fn, "state_dict", None)) and callable(getattr(loss_fn, "load_state_dict", None))


def _restore_loss_state(loss_fn: object, saved: Any, path: str) -> None:
    """Give a stateful ``loss_fn`` back the state saved with the checkpoint, or refuse a mismatch."""
    if _stateful(loss_fn) and saved is None:
        raise ValueError(
            f"{path} holds no loss_fn state, but this loss_fn ({type(loss_fn).__name__}) carries some: it was "
            "written by a run with another loss_fn; resume with the loss_fn that wrote it"
        )
    if saved is not None and not _stateful(loss_fn):
        raise ValueError(
            f"{path} was written with a stateful loss_fn ({', '.join(map(str, saved))}), but this loss_fn has no "
            "load_state_dict: resume with the loss_fn that wrote it"
        )
    if saved is not None:
        loss_fn.load_state_dict(saved)  # type: ignore[attr-defined]


def _load_for_resume(path: str, cfg: FitConfig, world: int, steps_per_epoch: int) -> dict[str, Any]:
    """Read the checkpoint at ``path`` and check that this run can continue it."""
    state = load_checkpoint(path)
    mid_epoch = state["batch"] > 0
    if mid_epoch and (state["world_size"] != world or state["steps_per_epoch"] != steps_per_epoch):
        raise ValueError(
            f"{path} stopped inside epoch {state['epoch'] + 1} with {state['world_size']} process(es) and "
            f"{state['steps_per_epoch']} steps per epoch, but this run has {world} and {steps_per_epoch}; "
            "resume with the same number of processes, dataset and batch_size"
        )
    changed = cfg.changed_fields(state["config"])
    if state["steps_per_epoch"] != steps_per_epoch:
        changed.append("steps_per_epoch (dataset size, batch_size or number of processes)")
    if state["config"]["epochs"] != cfg.epochs and cfg.schedule == "cosine":
        changed.append("epochs (the cosine schedule is stretched to the new length)")
    if changed:
        warnings.warn(
            f"resuming {path} with different settings: {', '.join(changed)}; "
            "the run will not match an uninterrupted one",
            stacklevel=4,
        )
    return state
