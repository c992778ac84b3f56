"""A3 (reconstructed): activation amplification / attenuation for adversarial robustness (the A3 paper).

The A3 paper's text and code are not public; only its design constraints are known. Everything below is a
**reconstruction** that satisfies those constraints, and every reconstructed choice is a parameter:

- The module sits on a post-ReLU feature map ``a`` ``(N, C, H, W)``. It owns one mask logit per channel
  (``theta``, ``C`` parameters). Training draws a relaxed mask ``M = sigmoid((theta + logistic noise) / tau)``
  (Gumbel-sigmoid, ``tau = 0.1``); inference uses ``M = 1[sigmoid(theta) > 0.5]``.
- A per-sample magnitude factor ``s = log(sum(a) / sum of the entries above the 90th percentile)`` (the top 10 %,
  chosen without gradient) says how spread out the activation mass is.
- Output ``a * exp(sign * beta * s * M)``: ``sign = +1`` amplifies (training only, to build negatives),
  ``sign = -1`` attenuates (the deployed model). With the same mask and factor one undoes the other (exactly in
  real arithmetic, to float rounding in practice).
- Modules are hooked onto named stages (:func:`attach` / :func:`detach`); the backbone's code is untouched, and a
  detached model is bit-identical to the original.
- Training (:func:`a3_loss`, :func:`train_a3`): x' = PGD-10 against the attenuated eval-mode model; base loss
  PGD-AT or TRADES; InfoNCE (anchor attenuated feature of x', positive attenuated feature of x, negatives the
  amplified features of x'); a ranking hinge on the true-class log-probability (attenuated > plain > amplified);
  and a degradation term pushing the amplified model to the top wrong class.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab._checks import check_choice
from robustlab.attacks import pgd
from robustlab.data._base import ImageDataset, iter_batches
from robustlab.methods._registry import METHODS
from robustlab.models.a3_module import (
    ATTRIBUTE,
    MODES,
    A3Attachment,
    A3Config,
    A3Module,
    a3_mode,
    a3_scale,
    added_parameters,
    attach,
    attach_from_spec,
    default_layers,
    detach,
    get_attachment,
    magnitude_factor,
    set_mode,
)
from robustlab.rng import make_generator

log = logging.getLogger(__name__)

__all__ = [
    "ATTRIBUTE",
    "MODES",
    "A3Attachment",
    "A3Config",
    "A3LossConfig",
    "A3Module",
    "A3TrainResult",
    "a3_loss",
    "a3_mode",
    "a3_scale",
    "added_parameters",
    "attach",
    "attach_from_spec",
    "default_layers",
    "degradation_loss",
    "detach",
    "get_attachment",
    "info_nce_loss",
    "magnitude_factor",
    "ranking_loss",
    "robust_accuracy",
    "set_mode",
    "train_a3",
]

# the plug-in module (A3Config ... attach_from_spec) lives in the model layer, robustlab.models.a3_module, so that
# loading a checkpoint can re-attach it without importing a training method; __all__ re-exports it from here


def _forward(model: nn.Module, images: Tensor, mode: str) -> tuple[Tensor, Tensor]:
    """Logits and the pooled output of the last A3 module, in ``mode``."""
    attachment = get_attachment(model)
    assert attachment is not None  # checked by the callers
    attachment.captured = {}
    try:
        with a3_mode(model, mode):
            logits = model(images)
        maps = attachment.captured.get(attachment.layers[-1])
    finally:
        attachment.captured = None
    if maps is None:
        raise ValueError(f"A3 layer {attachment.layers[-1]!r} did not run in the forward pass")
    return logits, maps.flatten(2).mean(dim=2)


# --- losses -----------------------------------------------------------------------------------------------------


def info_nce_loss(anchor: Tensor, positive: Tensor, negatives: Tensor, temperature: float = 0.1) -> Tensor:
    """InfoNCE with one positive per anchor and a shared pool of negatives (cosine similarities / temperature).

    ``-log(exp(cos(a_i, p_i) / t) / (exp(cos(a_i, p_i) / t) + sum_j exp(cos(a_i, n_j) / t)))``, averaged. Always
    positive; small when each anchor is closer to its positive than to every negative.

    Shape:
        anchor, positive ``(N, D)``, negatives ``(M, D)`` -> ``()``.
    """
    a = F.normalize(anchor, dim=1)
    pos = (a * F.normalize(positive, dim=1)).sum(dim=1, keepdim=True)
    neg = a @ F.normalize(negatives, dim=1).T
    logits = torch.cat([pos, neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(a), dtype=torch.long, device=a.device))


def _true_log_prob(logits: Tensor, labels: Tensor) -> Tensor:
    return F.log_softmax(logits, dim=1).gather(1, labels.unsqueeze(1)).squeeze(1)


def ranking_loss(attenuated: Tensor, plain: Tensor, amplified: Tensor, labels: Tensor, margin: float = 0.1) -> Tensor:
    """Hinge ranking of the true class's log-probability: attenuated > plain > amplified, each by ``margin``.

    ``mean(relu(m - (lp_att - lp_plain))) + mean(relu(m - (lp_plain - lp_amp)))``; zero once both gaps exceed
    the margin.

    Shape:
        three logits ``(N, K)``, labels ``(N,)`` -> ``()``.
    """
    lp_att, lp_plain, lp_amp = (_true_log_prob(z, labels) for z in (attenuated, plain, amplified))
    return F.relu(margin - (lp_att - lp_plain)).mean() + F.relu(margin - (lp_plain - lp_amp)).mean()


def degradation_loss(amplified: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of the amplified logits towards each sample's top wrong class (chosen without gradient).

    Shape:
        amplified ``(N, K)``, labels ``(N,)`` -> ``()``.
    """
    others = amplified.detach().scatter(1, labels.unsqueeze(1), float("-inf"))
    return F.cross_entropy(amplified, others.argmax(dim=1))


@dataclass
class A3LossConfig:
    """Settings of the A3 (reconstructed) training objective; weights 0 switch terms off (the ablations)."""

    at: str = "pgd"
    """Base adversarial training: ``"pgd"`` (Madry PGD-AT) or ``"trades"``."""
    eps: float = 8 / 255
    """L-inf radius of the training attack, in [0, 1] pixel units."""
    step_size: float = 2 / 255
    """Step of the training attack."""
    steps: int = 10
    """Steps of the training attack (random start)."""
    trades_beta: float = 6.0
    """Weight of TRADES' KL term."""
    contrastive_weight: float = 1.0
    """Weight of the InfoNCE term."""
    temperature: float = 0.1
    """InfoNCE temperature."""
    ranking_weight: float = 1.0
    """Weight of the ranking hinge."""
    margin: float = 0.1
    """Margin of the ranking hinge (on log-probabilities)."""
    degradation_weight: float = 0.5
    """Weight of CE(amplified logits, top wrong class)."""

    def __post_init__(self) -> None:
        self.at = check_choice(self.at, ("pgd", "trades"), "adversarial training method (at)")
        for name in (
            "eps",
            "step_size",
            "trades_beta",
            "contrastive_weight",
            "ranking_weight",
            "margin",
            "degradation_weight",
        ):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not (isinstance(self.steps, int) and self.steps >= 1):
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    @property
    def uses_amplified(self) -> bool:
        return self.contrastive_weight > 0 or self.ranking_weight > 0 or self.degradation_weight > 0


def _trades_attack(model: nn.Module, images: Tensor, cfg: A3LossConfig, generator: torch.Generator) -> Tensor:
    """TRADES' inner maximisation: PGD on KL(p(x) || p(x')) from a small Gaussian start (Zhang et al. 2019)."""
    with torch.no_grad():
        p_nat = F.softmax(model(images), dim=1)
    start = 0.001 * torch.randn(images.shape, generator=generator).to(images.device)
    adv = (images + start).clamp(0, 1)
    for _ in range(cfg.steps):
        adv.requires_grad_(True)
        kl = F.kl_div(F.log_softmax(model(adv), dim=1), p_nat, reduction="sum")
        (grad,) = torch.autograd.grad(kl, adv)
        with torch.no_grad():
            adv = adv + cfg.step_size * grad.sign()
            adv = torch.min(torch.max(adv, images - cfg.eps), images + cfg.eps).clamp(0, 1)
    return adv.detach()


def _adversarial(model: nn.Module, images: Tensor, labels: Tensor, cfg: A3LossConfig, generator: Any) -> Tensor:
    """x' against ``model`` in eval mode (its mode is restored): PGD with random start, or TRADES' KL attack."""
    was_training = model.training
    model.eval()
    try:
        if cfg.at == "pgd":
            return pgd(model, images, labels, eps=cfg.eps, steps=cfg.steps, step_size=cfg.step_size,
                       random_start=True, generator=generator)  # fmt: skip
        return _trades_attack(model, images, cfg, generator or torch.Generator().manual_seed(0))
    finally:
        model.train(was_training)


def _base_loss(logits_adv: Tensor, logits_nat: Tensor | None, labels: Tensor, cfg: A3LossConfig) -> Tensor:
    if cfg.at == "pgd":
        return F.cross_entropy(logits_adv, labels)
    assert logits_nat is not None  # TRADES always computes the clean logits
    kl = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits_nat, dim=1), reduction="batchmean")
    return F.cross_entropy(logits_nat, labels) + cfg.trades_beta * kl


def _base_only_loss(
    model: nn.Module, images: Tensor, labels: Tensor, cfg: A3LossConfig, generator: Any
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """The plain PGD-AT / TRADES objective of a model without A3: the equal-recipe baseline."""
    adv = _adversarial(model, images, labels, cfg, generator)
    logits_adv = model(adv)
    base = _base_loss(logits_adv, model(images) if cfg.at == "trades" else None, labels, cfg)
    return base, logits_adv, {"base": float(base.detach())}


def a3_loss(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    config: A3LossConfig | None = None,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """The A3 (reconstructed) training objective on one batch.

    x' is generated against the deployed model (eval mode, attenuation); the losses are then computed with the
    model in the mode it was given (train mode inside :func:`robustlab.train.fit`), so the mask is the relaxed
    Gumbel-sigmoid one and gradients reach the mask logits.

    Args:
        model: a model with A3 attached (or its DDP wrapper); without A3, only the base loss.
        images: clean pixels in [0, 1].
        labels: true classes.
        config: objective settings (:class:`A3LossConfig`).
        generator: draws the attack's random start and the training masks' noise.

    Returns:
        ``(loss, adversarial logits, parts)``; ``parts`` maps each term's name to its value.

    Shape:
        images ``(N, C, H, W)``, labels ``(N,)`` -> loss ``()``, logits ``(N, K)``.

    Raises:
        ValueError: no A3 attached while A3 terms are asked for (without A3 and with every A3 weight 0 this is the
            plain PGD-AT / TRADES loss, the equal-recipe baseline).
    """
    cfg = config or A3LossConfig()
    attachment = get_attachment(model)
    if attachment is None and (cfg.uses_amplified or cfg.contrastive_weight > 0):
        raise ValueError(
            "a3_loss needs a model with A3 attached (call attach(model, layers) first); without A3 only the base "
            "adversarial loss is defined: set contrastive_weight, ranking_weight and degradation_weight to 0"
        )
    if attachment is None:
        return _base_only_loss(model, images, labels, cfg, generator)
    for block in attachment.modules_in_order():
        block.generator = generator
    try:
        return _a3_terms(model, images, labels, cfg, generator)
    finally:
        for block in attachment.modules_in_order():
            block.generator = None


def _a3_terms(
    model: nn.Module, images: Tensor, labels: Tensor, cfg: A3LossConfig, generator: Any
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """The terms of :func:`a3_loss` for a model with A3 attached."""
    with a3_mode(model, "attenuate"):  # x' against the deployed model: attenuation, hard mask, eval mode
        adv = _adversarial(model, images, labels, cfg, generator)

    parts: dict[str, float] = {}
    need_clean = cfg.at == "trades" or cfg.contrastive_weight > 0
    logits_adv, feat_adv = _forward(model, adv, "attenuate")
    if need_clean:
        logits_nat, feat_nat = _forward(model, images, "attenuate")
    base = _base_loss(logits_adv, logits_nat if need_clean else None, labels, cfg)
    total = base
    parts["base"] = float(base.detach())
    if cfg.uses_amplified:
        logits_amp, feat_amp = _forward(model, adv, "amplify")
        if cfg.contrastive_weight > 0:
            contrastive = info_nce_loss(feat_adv, feat_nat, feat_amp, cfg.temperature)
            total = total + cfg.contrastive_weight * contrastive
            parts["contrastive"] = float(contrastive.detach())
        if cfg.ranking_weight > 0:
            logits_plain, _ = _forward(model, adv, "off")
            ranking = ranking_loss(logits_adv, logits_plain, logits_amp, labels, cfg.margin)
            total = total + cfg.ranking_weight * ranking
            parts["ranking"] = float(ranking.detach())
        if cfg.degradation_weight > 0:
            degradation = degradation_loss(logits_amp, labels)
            total = total + cfg.degradation_weight * degradation
            parts["degradation"] = float(degradation.detach())
    return total, logits_adv, parts


# --- training ---------------------------------------------------------------------------------------------------


@dataclass
class A3TrainResult:
    """What :func:`train_a3` did."""

    history: list[dict[str, Any]] = field(default_factory=list)
    """One dict per epoch: epoch, lr, train_loss, train_acc (robust, on x'), parts (mean loss terms), val_clean,
    val_pgd20 (None without val data), seconds."""
    best_epoch: int | None = None
    """Epoch (1-based) with the highest PGD-20 accuracy on the validation data (None without it)."""
    best_pgd20: float | None = None
    """That accuracy."""
    best_state: dict[str, Tensor] | None = None
    """The classifier's state dict at ``best_epoch`` (the last epoch's without validation data)."""
    added_parameters: int = 0
    """Parameters A3 added to the backbone."""


def robust_accuracy(
    model: nn.Module,
    data: ImageDataset,
    *,
    eps: float = 8 / 255,
    steps: int = 20,
    step_size: float = 2 / 255,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    seed: int = 0,
) -> tuple[float, float]:
    """Clean and PGD-``steps`` (L-inf, CE, random start) accuracy of ``model`` in its current mode."""
    correct_clean = correct_adv = count = 0
    for b, batch in enumerate(iter_batches(data, batch_size)):
        x, y = batch.images.to(device), batch.labels.to(device)
        with torch.no_grad():
            correct_clean += int((model(x).argmax(1) == y).sum())
        adv = pgd(model, x, y, eps=eps, steps=steps, step_size=step_size, generator=make_generator(seed, "val", b))
        with torch.no_grad():
            correct_adv += int((model(adv).argmax(1) == y).sum())
        count += len(y)
    return correct_clean / max(count, 1), correct_adv / max(count, 1)


@METHODS.register(name="a3")
def train_a3(
    model: nn.Module,
    train_data: ImageDataset,
    *,
    val_data: ImageDataset | None = None,
    epochs: int,
    lr: float = 0.1,
    milestones: Sequence[float] = (0.5, 0.75),
    decay: float = 0.1,
    batch_size: int = 128,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    loss_config: A3LossConfig | None = None,
    augment: Callable[..., Tensor] | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    max_time: float | None = None,
) -> A3TrainResult:
    """Adversarially train a model with A3 (reconstructed) attached, with SGD and a step-decay schedule.

    The schedule is run as one :func:`robustlab.train.fit` call per learning-rate phase (constant rate,
    momentum restarts at each decay). After every epoch the deployed (attenuated, eval-mode) model's clean and
    PGD-20 accuracy on ``val_data`` are measured; the best PGD-20 state is kept.

    Args:
        model: the classifier, with A3 attached (:func:`attach`); trained in place, left in eval mode with the
            last epoch's weights.
        train_data: training samples.
        val_data: samples for the per-epoch PGD-20 check (keep it small: 20 PGD steps per image).
        epochs: total epochs.
        lr: initial learning rate.
        milestones: fractions of ``epochs`` after which the rate is multiplied by ``decay``.
        decay: the step-decay factor.
        batch_size, momentum, weight_decay: SGD settings.
        loss_config: the objective (:class:`A3LossConfig`); all A3 weights 0 gives the equal-budget baseline
            objective on the same model.
        augment: ``augment(images, *, generator)`` per batch, e.g. :func:`robustlab.train.random_crop_flip`.
        seed: seeds shuffling, augmentation, attacks and masks.
        device: None picks CUDA when available.
        callback: receives :func:`robustlab.train.fit`'s events plus ``{"kind": "a3_epoch", **history entry}``.
        max_time: stop after this many seconds (checked after every step).

    Returns:
        An :class:`A3TrainResult`.

    Raises:
        ValueError: no A3 attached while A3 terms are asked for, or invalid settings.
    """
    from robustlab.train import fit

    cfg = loss_config or A3LossConfig()
    if get_attachment(model) is None and (cfg.uses_amplified or cfg.contrastive_weight > 0):
        raise ValueError(
            "train_a3 needs a model with A3 attached (call attach(model, layers) first); a model without A3 trains "
            "with the base loss only (A3LossConfig with contrastive/ranking/degradation weights 0)"
        )
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if any(not 0 < m < 1 for m in milestones) or list(milestones) != sorted(milestones):
        raise ValueError(f"milestones must be increasing fractions in (0, 1), got {list(milestones)}")
    if not 0 < decay <= 1:
        raise ValueError(f"decay must be in (0, 1], got {decay}")
    bounds = sorted({0, *(round(m * epochs) for m in milestones), epochs})
    phases = [(b - a, lr * decay**k) for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)) if b > a]
    result = A3TrainResult(added_parameters=added_parameters(model))
    step = [0]
    sums: dict[str, float] = {}
    started = time.monotonic()

    def loss_fn(net: nn.Module, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        loss, logits, parts = a3_loss(net, images, labels, cfg, generator=make_generator(seed, "a3_step", step[0]))
        step[0] += 1
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v
        sums["_n"] = sums.get("_n", 0.0) + 1
        return loss, logits

    epoch_offset = 0
    for k, (phase_epochs, phase_lr) in enumerate(phases):

        def on_event(event: dict[str, Any], offset: int = epoch_offset) -> None:
            if "epoch" in event:
                event = {**event, "epoch": event["epoch"] + offset}
            if event.get("kind") == "epoch_end":
                n = max(sums.pop("_n", 1.0), 1.0)
                entry = {
                    "epoch": event["epoch"], "lr": event["lr"], "train_loss": event["train_loss"],
                    "train_acc": event["train_acc"], "parts": {k: v / n for k, v in sums.items()},
                    "val_clean": None, "val_pgd20": None, "seconds": event["seconds"],
                }  # fmt: skip
                sums.clear()
                if val_data is not None:
                    model.eval()  # fit switches back to train mode at the next epoch
                    entry["val_clean"], entry["val_pgd20"] = robust_accuracy(
                        model, val_data, batch_size=max(batch_size, 128), device=device, seed=seed
                    )
                    if result.best_pgd20 is None or entry["val_pgd20"] > result.best_pgd20:
                        result.best_pgd20, result.best_epoch = entry["val_pgd20"], entry["epoch"]
                        result.best_state = copy.deepcopy(model.state_dict())
                result.history.append(entry)
                log.info("A3 epoch %d: %s", entry["epoch"], entry)
                if callback is not None:
                    callback({"kind": "a3_epoch", **entry})
            elif callback is not None:
                callback(event)

        remaining = None if max_time is None else max_time - (time.monotonic() - started)
        if remaining is not None and remaining <= 0:
            break
        fit_result = fit(
            model, train_data, epochs=phase_epochs, lr=phase_lr, batch_size=batch_size, optimizer="sgd",
            momentum=momentum, weight_decay=weight_decay, schedule="constant", loss_fn=loss_fn, augment=augment,
            seed=seed + 1000 * k, device=device, callback=on_event, max_time=remaining,
        )  # fmt: skip
        epoch_offset += fit_result.epochs
        if fit_result.timed_out:
            break
    if result.best_state is None:
        result.best_state = copy.deepcopy(model.state_dict())
    model.eval()
    return result
