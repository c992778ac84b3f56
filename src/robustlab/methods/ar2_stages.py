"""How one AR2 stage runs and how candidates are scored: corruption draws, stage data, the ``fit`` call of a
gradient stage with its update check, the BatchNorm-adaptation stage, and the held-out measurements.

Used by :func:`robustlab.methods.ar2.repair`; every function takes the :class:`~robustlab.methods.ar2.AR2Config`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from robustlab.data._base import ImageDataset, Subset
from robustlab.methods.ar2_losses import augmix_loss, finetune_loss, refinement_terms
from robustlab.methods.bn_adapt import adapt_batchnorm
from robustlab.models.classifier import Classifier
from robustlab.perturb import perturb
from robustlab.rng import derive_seed, make_generator, sample_generators
from robustlab.train import fit, random_crop_flip

if TYPE_CHECKING:
    from robustlab.methods.ar2 import AR2Config

UNIFIED = "unified"
Callback = Callable[[dict[str, Any]], None]


class NegligibleUpdateWarning(UserWarning):
    """A repair stage barely changed the weights or its loss: its learning rate is probably too small."""


def corrupt_batch(images: Tensor, corruption: str, config: AR2Config, generator: torch.Generator) -> Tensor:
    """Corrupt a training batch: the corruption itself, or one drawn from the pool in ``"unified"`` mode."""
    if corruption == UNIFIED:
        pool = config.unified_corruptions
        corruption = pool[int(torch.randint(len(pool), (1,), generator=generator))]
    with torch.no_grad():
        return perturb(images, corruption, config.severity, generator=generator, profile=config.profile)


def held_out_perturb(corruption: str, config: AR2Config) -> Callable[[Tensor, Tensor], Tensor]:
    """Corrupt held-out samples reproducibly: per-sample generators, per-sample corruption in unified mode."""
    pool = config.unified_corruptions if corruption == UNIFIED else (corruption,)

    def apply(images: Tensor, indices: Tensor) -> Tensor:
        idx = [int(i) for i in indices]
        picks = [derive_seed(config.seed, "ar2-val-pick", i) % len(pool) for i in idx]
        out = images.clone()
        for p in sorted(set(picks)):  # one call per corruption present, not per image
            rows = [j for j, q in enumerate(picks) if q == p]
            gens = sample_generators(config.seed, [idx[j] for j in rows], "ar2-val", pool[p])
            out[rows] = perturb(images[rows], pool[p], config.severity, generator=gens, profile=config.profile)
        return out

    return apply


def stage_data(train: ImageDataset, steps: int | None, batch_size: int, seed: int, *keys: object) -> ImageDataset:
    if steps is None:
        return train
    need = steps * batch_size
    order: list[int] = []
    round_ = 0
    while len(order) < need:  # cycle through fresh permutations when the budget exceeds one epoch
        perm = torch.randperm(len(train), generator=make_generator(seed, "ar2-stage", *keys, round_)).tolist()
        order += perm
        round_ += 1
    return Subset(train, order[:need])


def head_params(model: Classifier) -> tuple[Tensor, Tensor | None]:
    linear = cast(nn.Linear, cast(Any, model.net).get_classifier())  # a GAP + linear head, checked by repair
    return linear.weight, linear.bias


def stage_loss(
    stage: str, slot: str, reference: Classifier, corruption: str, config: AR2Config, iteration: int
) -> tuple[Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, Tensor | None]], list[Tensor]]:
    """The ``fit`` loss of one stage and the list its refinement terms are appended to (detached, per step).

    Each call draws its corruption from the next generator of ``(seed, stage, slot, iteration, call)``: the slot
    keeps a baseline's two stages of one iteration (same stage name) from seeing the same noise.
    """
    calls = 0
    terms: list[Tensor] = []

    def loss_fn(net: nn.Module, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor | None]:
        nonlocal calls
        calls += 1
        generator = make_generator(config.seed, "ar2", stage, slot, iteration, calls)
        if stage == "augmix":
            return augmix_loss(net, images, labels, jsd_weight=config.augmix_jsd_weight,
                               severity=config.augmix_severity, generator=generator)  # fmt: skip
        corrupted = corrupt_batch(images, corruption, config, generator)
        if stage == "finetune":
            return finetune_loss(net, images, corrupted, labels)
        # CAMs are read from the classifier itself (a DDP wrapper would hide forward_features)
        clf = cast(Classifier, getattr(net, "module", net))
        clean, noisy, logits = refinement_terms(clf, reference, images, corrupted, labels, alpha=config.alpha,
                                                k=config.k)  # fmt: skip
        terms.append(torch.stack([clean.detach(), noisy.detach()]))
        return config.alpha * clean + (1 - config.alpha) * noisy, logits

    return loss_fn, terms


HeldOut = Callable[[], list[tuple[Tensor, Tensor, Tensor]]]


def held_out_batches(val: ImageDataset, corruption: str, config: AR2Config, device: torch.device) -> HeldOut:
    """``() -> [(clean, corrupted, labels), ...]`` over the held-out split, corrupted once and kept when small."""
    held_out = held_out_perturb(corruption, config)
    cache: list[tuple[Tensor, Tensor, Tensor]] = []
    c, h, w = val.get_batch([0])[0].shape[1:]
    keep = len(val) * c * h * w * 8 <= 1 << 30  # clean + corrupted float32 under 1 GiB

    def batches() -> list[tuple[Tensor, Tensor, Tensor]]:
        if cache:
            return cache
        out = []
        for start in range(0, len(val), config.batch_size):
            idx = torch.arange(start, min(start + config.batch_size, len(val)))
            images, labels = val.get_batch(idx.tolist())
            images, labels = images.to(device), labels.to(device)
            out.append((images, held_out(images, idx), labels))
        if keep:
            cache.extend(out)
        return out

    return batches


@torch.no_grad()
def score_held_out(student: Classifier, reference: Classifier, batches: HeldOut, config: AR2Config, cam_loss: bool
           ) -> dict[str, float]:  # fmt: skip
    """Held-out clean and corrupted accuracy of the student (eval mode), and optionally its ``L_CAM``."""
    student.eval()
    sums = torch.zeros(5, dtype=torch.float64)
    for images, corrupted, labels in batches():
        sums[0] += (student(images).argmax(1) == labels).sum().item()
        sums[1] += (student(corrupted).argmax(1) == labels).sum().item()
        sums[2] += len(labels)
        if cam_loss:
            clean, noisy, _ = refinement_terms(student, reference, images, corrupted, labels, alpha=0.5, k=config.k,
                                               differentiable=False)  # fmt: skip
            sums[3] += clean.item() * len(labels)
            sums[4] += noisy.item() * len(labels)
    n = float(sums[2])
    entry = {"val_clean_acc": float(sums[0]) / n, "val_corrupted_acc": float(sums[1]) / n}
    if cam_loss:
        cam_clean, cam_noisy = float(sums[3]) / n, float(sums[4]) / n
        entry.update(val_cam_loss=config.alpha * cam_clean + (1 - config.alpha) * cam_noisy, val_cam_clean=cam_clean,
                     val_cam_corrupted=cam_noisy)  # fmt: skip
    return entry


def run_stage(
    student: Classifier, reference: Classifier, train: ImageDataset, *, stage: str, slot: str, iteration: int,
    corruption: str, config: AR2Config, device: torch.device, on_step: Callback,
) -> dict[str, Any]:  # fmt: skip
    """One gradient stage (one ``fit`` call with a fresh optimiser); returns its history entry."""
    steps = config.refine_steps if slot == "refine" else config.finetune_steps
    epochs = 1 if steps is not None else (config.refine_epochs if slot == "refine" else config.finetune_epochs)
    lr = config.refine_lr if stage == "refine" else config.finetune_lr
    loss_fn, terms = stage_loss(stage, slot, reference, corruption, config, iteration)
    data = stage_data(train, steps, config.batch_size, config.seed, stage, iteration, slot)
    head = [p for p in head_params(student) if p is not None]
    # refinement updates the backbone only: the classifier (the CAM weights) is frozen for the stage
    for p in head:
        p.requires_grad_(stage != "refine")
    trained = [p for p in student.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trained]
    losses: list[float] = []

    def on_event(event: dict[str, Any]) -> None:
        if event.get("kind") == "step":
            losses.append(event["loss"])
            on_step(event)

    try:
        result = fit(
            student, data, epochs=epochs, lr=lr, batch_size=config.batch_size, optimizer=config.optimizer,
            weight_decay=config.weight_decay, schedule=config.schedule, amp=config.amp, loss_fn=loss_fn,
            augment=random_crop_flip if config.augment else None,
            seed=derive_seed(config.seed, "ar2-fit", stage, iteration, slot) & 0x7FFFFFFF, device=device,
            callback=on_event,
        )  # fmt: skip
    finally:
        for p in head:
            p.requires_grad_(True)
    with torch.no_grad():
        delta = sum(float((p - b).float().pow(2).sum()) for p, b in zip(trained, before, strict=True))
        norm = sum(float(b.float().pow(2).sum()) for b in before)
    fifth = max(1, len(losses) // 5)
    entry = {"iteration": iteration, "stage": stage, "slot": slot, "lr": lr, "loss": result.train_loss,
             "steps": result.steps, "loss_first": sum(losses[:fifth]) / fifth,
             "loss_last": sum(losses[-fifth:]) / fifth,
             "weight_change": math.sqrt(delta / max(norm, 1e-30))}  # fmt: skip
    if terms:
        mean = torch.stack(terms).mean(dim=0).tolist()
        entry.update(cam_clean=mean[0], cam_corrupted=mean[1])
    return entry


def check_update(entry: dict[str, Any], min_update: float) -> None:
    """Warn when a stage's relative weight change, or (two steps or more) its relative loss change, is tiny."""
    first, last = entry["loss_first"], entry["loss_last"]
    loss_change = abs(last - first) / max(abs(first), 1e-12) if entry["steps"] >= 2 else math.inf
    if entry["weight_change"] < min_update or loss_change < min_update:
        warnings.warn(
            NegligibleUpdateWarning(
                f"AR2 {entry['stage']} stage of iteration {entry['iteration']} barely changed the model: relative "
                f"weight change {entry['weight_change']:.1e}, loss {first:.4g} -> {last:.4g} (threshold "
                f"{min_update:g}); raise its learning rate ({entry['stage'].replace('augmix', 'finetune')}_lr="
                f"{entry['lr']:g}) or its steps"
            ),
            stacklevel=3,
        )


def bn_adapt_stage(student: Classifier, train: ImageDataset, corruption: str, config: AR2Config, device: torch.device
              ) -> dict[str, Any]:  # fmt: skip
    """The ``"bn_adapt"`` baseline's one stage: BatchNorm statistics averaged over corrupted training batches."""
    bs = config.batch_size
    n_batches = config.bn_adapt_batches or -(-len(train) // bs)
    data = stage_data(train, n_batches, bs, config.seed, "bn_adapt", 1, "adapt")

    def batches() -> Any:
        for b in range(n_batches):
            idx = list(range(b * bs, min((b + 1) * bs, len(data))))
            if len(idx) < 2:  # a one-image remainder has no variance
                continue
            images = data.get_batch(idx)[0].to(device)
            generator = make_generator(config.seed, "ar2", "bn_adapt", b)
            if config.augment:
                images = random_crop_flip(images, generator=generator)
            yield corrupt_batch(images, corruption, config, generator)

    seen = adapt_batchnorm(student, batches())
    return {"iteration": 1, "stage": "bn_adapt", "slot": "adapt", "steps": 0, "images": seen}
