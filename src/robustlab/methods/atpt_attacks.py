"""Attacks on test-time prompt tuning and the evaluation loop that measures them.

Three conditions besides clean data:

- ``pgd``: the A-TPT / R-TPT protocol, PGD l-inf on the zero-shot logits of view 0 under the **initial** prompt,
  i.e. after the prompt reset (eps 4/255, 100 steps, step eps/4 for ViTs);
- ``pgd_stale``: the same attack in the public code's order, before the reset, so each sample is attacked through
  the previous sample's tuned prompt (a documented variant, not the reference protocol);
- ``adaptive``: PGD through the whole test-time pipeline: every step averages the loss over ``eot`` fresh random
  view sets (EOT) and differentiates through the views, the prompt update (second order) and the fusion; AugMix's
  8-bit operations pass gradients straight through (BPDA) and masks, entropy selection and fusion weights are held
  constant. It starts from the ``pgd`` example, and a sample counts as broken when either example breaks the
  defence, so its accuracy is never above the non-adaptive one on the same points.

The defence's own randomness (its views) comes from a per-sample generator the attacker never sees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.attacks import pgd
from robustlab.methods.atpt import TestTimeTuner
from robustlab.methods.atpt_prompt import encode_images
from robustlab.rng import make_generator

TTA_ATTACKS = ("pgd", "pgd_stale", "adaptive")


@dataclass(frozen=True)
class TTAAttackConfig:
    """Attack settings (defaults: the A-TPT paper's ViT protocol).

    Attributes:
        eps: l-inf radius in [0, 1] pixel units (4/255; the paper uses 1/255 and 1 step for RN50).
        steps: PGD steps of the zero-shot attack (100).
        step_size: its step; default ``eps / 4``.
        adaptive_steps: PGD steps through the pipeline (each costs ``eot`` adaptations with second-order
            gradients).
        adaptive_step_size: default ``eps / 4``.
        eot: random view sets averaged per adaptive step.
    """

    eps: float = 4 / 255
    steps: int = 100
    step_size: float | None = None
    adaptive_steps: int = 10
    adaptive_step_size: float | None = None
    eot: int = 4

    def __post_init__(self) -> None:
        if not 0 <= self.eps <= 1:
            raise ValueError(f"eps must lie in [0, 1] (pixel units, e.g. 4/255), got {self.eps!r}")
        for name in ("steps", "adaptive_steps", "eot"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    @property
    def pgd_step(self) -> float:
        return self.eps / 4 if self.step_size is None else float(self.step_size)

    @property
    def adaptive_step(self) -> float:
        return self.eps / 4 if self.adaptive_step_size is None else float(self.adaptive_step_size)


class _PromptZeroShot(nn.Module):
    """[0, 1] pixels -> CLIP logits under a fixed context (what the paper's attack differentiates)."""

    def __init__(self, tuner: TestTimeTuner, ctx: Tensor) -> None:
        super().__init__()
        self._tuner = [tuner]
        with torch.no_grad():  # the prompt is fixed during the attack: encode the class texts once
            self.text_features = tuner.learner.text_features(ctx.detach())
        self.num_classes = tuner.num_classes
        self.training = False  # no layers of its own; the CLIP's mode is its owner's

    def forward(self, images: Tensor) -> Tensor:
        tuner = self._tuner[0]
        features = encode_images(tuner.model, images)
        logits = tuner.learner.clip.logit_scale.exp().float() * features @ self.text_features.T
        bias = getattr(tuner.learner.clip, "logit_bias", None)
        return logits + bias.float() if bias is not None else logits


def zero_shot_pgd(
    tuner: TestTimeTuner,
    images: Tensor,
    labels: Tensor,
    *,
    config: TTAAttackConfig | None = None,
    ctx: Tensor | None = None,
    generator: torch.Generator | list[torch.Generator] | None = None,
) -> Tensor:
    """The paper's attack: PGD l-inf (random start) on the zero-shot logits of the unaugmented image.

    Args:
        tuner: the defended pipeline (only its CLIP and prompt are used).
        images: pixels in [0, 1].
        labels: true classes.
        config: eps, steps, step size.
        ctx: the prompt attacked; default the initial one (attack after the reset). Pass the learner's current
            ``ctx`` to reproduce the stale-prompt order.
        generator: the random starts (one per image keeps images independent).

    Shape:
        images ``(N, C, H, W)``, labels ``(N,)`` -> ``(N, C, H, W)``.
    """
    cfg = config or TTAAttackConfig()
    model = _PromptZeroShot(tuner, tuner.learner.init_ctx if ctx is None else ctx)
    return pgd(
        model, images, labels, eps=cfg.eps, steps=cfg.steps, step_size=cfg.pgd_step, norm="linf", generator=generator
    )


def adaptive_pgd(
    tuner: TestTimeTuner,
    image: Tensor,
    label: int,
    *,
    config: TTAAttackConfig | None = None,
    init: Tensor | None = None,
    seed: int = 0,
    index: int = 0,
) -> Tensor:
    """PGD l-inf through the whole test-time pipeline of one image, with EOT over its random views.

    Each step maximises ``mean_e -log p_label`` of :meth:`TestTimeTuner.adapt` (``differentiable=True``) over
    ``eot`` view sets drawn from generators keyed ``(seed, "eot", index, step, e)``, then takes a signed step
    and projects onto the eps-ball and [0, 1].

    Args:
        tuner: the defended pipeline.
        image: clean pixels in [0, 1].
        label: the true class.
        config: eps, adaptive steps and step size, EOT samples.
        init: the starting point (e.g. :func:`zero_shot_pgd`'s example); default the clean image.
        seed: seeds the EOT draws.
        index: the sample's index (keys its EOT draws).

    Returns:
        The last iterate.

    Shape:
        image ``(C, H, W)`` -> ``(C, H, W)``.
    """
    cfg = config or TTAAttackConfig()
    clean = image.detach()
    start = clean if init is None else init.detach()
    delta = (start - clean).clamp(-cfg.eps, cfg.eps)
    for step in range(cfg.adaptive_steps):
        delta = delta.detach().requires_grad_(True)
        adversarial = (clean + delta).clamp(0, 1)
        loss = adversarial.new_zeros(())
        for e in range(cfg.eot):
            generator = make_generator(seed, "tta-eot", index, step, e)
            result = tuner.adapt(adversarial, generator=generator, differentiable=True)
            loss = loss - result.probs[label].clamp(min=1e-12).log() / cfg.eot
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta + cfg.adaptive_step * grad.sign()).clamp(-cfg.eps, cfg.eps)
        delta = (clean + delta).clamp(0, 1) - clean
    return (clean + delta.detach()).clamp(0, 1)


@dataclass
class TTAOutcome:
    """Per-sample predictions of one test-time method under each condition.

    Attributes:
        labels: true classes ``(N,)``.
        predictions: condition (``"clean"``, ``"pgd"``, ``"pgd_stale"``, ``"adaptive"``) -> predictions ``(N,)``.
        weight_entropy: condition -> fusion-weight entropy per sample ``(N,)``.
        seconds: condition -> wall-clock seconds spent on it (attack and adaptation).
    """

    labels: Tensor
    predictions: dict[str, Tensor] = field(default_factory=dict)
    weight_entropy: dict[str, Tensor] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def accuracy(self, condition: str) -> float:
        preds = self.predictions[condition]
        return float((preds == self.labels).float().mean()) if len(preds) else float("nan")


def evaluate_tta(
    tuner: TestTimeTuner,
    images: Tensor,
    labels: Tensor,
    *,
    attacks: tuple[str, ...] = (),
    attack_config: TTAAttackConfig | None = None,
    seed: int = 0,
    indices: list[int] | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> TTAOutcome:
    """Clean and attacked accuracy of one test-time method on a set of images.

    Every sample's views come from a generator keyed ``(seed, "tta-views", index)`` under every condition, and the
    prompt is reset before each adaptation. ``adaptive`` also computes ``pgd`` (its starting point).

    Args:
        tuner: the defended pipeline.
        images: pixels in [0, 1], at the model's input size.
        labels: true classes.
        attacks: any of :data:`TTA_ATTACKS`.
        attack_config: attack settings.
        seed: seeds views, PGD starts and EOT draws.
        indices: dataset indices of the samples (keys of their generators); default ``0..N-1``.
        callback: progress events ``{"description", "done", "total"}``.

    Shape:
        images ``(N, C, H, W)``, labels ``(N,)``.
    """
    import time

    for name in attacks:
        if name not in TTA_ATTACKS:
            raise ValueError(f"unknown test-time attack {name!r}; choose from {', '.join(TTA_ATTACKS)}")
    cfg = attack_config or TTAAttackConfig()
    n = len(images)
    indices = list(range(n)) if indices is None else [int(i) for i in indices]
    conditions = ["clean"]
    if "pgd" in attacks or "adaptive" in attacks:
        conditions.append("pgd")
    conditions += [a for a in ("pgd_stale", "adaptive") if a in attacks]
    out = TTAOutcome(labels.cpu())
    total = n * len(conditions)
    done = 0

    def view_generator(i: int) -> torch.Generator:
        return make_generator(seed, "tta-views", indices[i])

    def adapt_all(condition: str, inputs: Tensor) -> None:
        preds, ents = torch.empty(n, dtype=torch.long), torch.empty(n)
        for i in range(n):
            result = tuner.adapt(inputs[i], generator=view_generator(i))
            preds[i], ents[i] = result.prediction, result.weight_entropy
        out.predictions[condition], out.weight_entropy[condition] = preds, ents

    def report(description: str) -> None:
        if callback is not None:
            callback({"description": description, "done": done, "total": total})

    pgd_examples: Tensor | None = None
    for condition in conditions:
        started = time.perf_counter()
        report(f"{tuner.config.method}: {condition}")
        if condition == "clean":
            adapt_all("clean", images)
        elif condition == "pgd":
            starts = [make_generator(seed, "tta-pgd", i) for i in indices]
            pgd_examples = zero_shot_pgd(tuner, images, labels, config=cfg, generator=starts)
            adapt_all("pgd", pgd_examples)
        elif condition == "pgd_stale":
            # the public code's order: attack through whatever prompt the previous sample left, then reset and tune
            tuner.learner.reset()
            preds, ents = torch.empty(n, dtype=torch.long), torch.empty(n)
            for i in range(n):
                stale = tuner.learner.ctx.detach().clone()
                adversarial = zero_shot_pgd(
                    tuner,
                    images[i : i + 1],
                    labels[i : i + 1],
                    config=cfg,
                    ctx=stale,
                    generator=[make_generator(seed, "tta-pgd", indices[i])],
                )[0]
                result = tuner.adapt(adversarial, generator=view_generator(i))
                preds[i], ents[i] = result.prediction, result.weight_entropy
            out.predictions[condition], out.weight_entropy[condition] = preds, ents
        else:
            if pgd_examples is None:  # "pgd" always runs before "adaptive"
                raise RuntimeError("adaptive attack needs the pgd examples first")
            preds, ents = out.predictions["pgd"].clone(), out.weight_entropy["pgd"].clone()
            for i in range(n):
                if int(preds[i]) != int(labels[i]):
                    continue  # the non-adaptive example already breaks the defence on this sample
                adversarial = adaptive_pgd(
                    tuner, images[i], int(labels[i]), config=cfg, init=pgd_examples[i], seed=seed, index=indices[i]
                )
                result = tuner.adapt(adversarial, generator=view_generator(i))
                preds[i], ents[i] = result.prediction, result.weight_entropy
            out.predictions[condition], out.weight_entropy[condition] = preds, ents
        out.seconds[condition] = time.perf_counter() - started
        done += n
        report(f"{tuner.config.method}: {condition}")
    return out


def evaluate_tta_dataset(
    tuner: TestTimeTuner,
    dataset: Any,
    *,
    attacks: tuple[str, ...] = (),
    attack_config: TTAAttackConfig | None = None,
    seed: int = 0,
    batch_size: int = 16,
    device: torch.device | str | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> TTAOutcome:
    """:func:`evaluate_tta` over an :class:`~robustlab.data.ImageDataset`, ``batch_size`` images in memory at a time.

    Samples are keyed by their dataset index, so the outcome does not depend on ``batch_size``.
    """
    n = len(dataset)
    merged = TTAOutcome(torch.zeros(0, dtype=torch.long))
    for start in range(0, n, batch_size):
        indices = list(range(start, min(n, start + batch_size)))
        images, labels = dataset.get_batch(indices)
        part = evaluate_tta(tuner, images.float().to(device), labels.to(device), attacks=attacks,
                            attack_config=attack_config, seed=seed, indices=indices)  # fmt: skip
        merged.labels = torch.cat([merged.labels, part.labels])
        for condition, preds in part.predictions.items():
            previous = merged.predictions.get(condition, torch.zeros(0, dtype=torch.long))
            merged.predictions[condition] = torch.cat([previous, preds])
            previous = merged.weight_entropy.get(condition, torch.zeros(0))
            merged.weight_entropy[condition] = torch.cat([previous, part.weight_entropy[condition]])
            merged.seconds[condition] = merged.seconds.get(condition, 0.0) + part.seconds[condition]
        if callback is not None:
            callback({"description": f"{tuner.config.method}", "done": indices[-1] + 1, "total": n})
    return merged
