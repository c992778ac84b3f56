"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness ...", Algorithm 1).

APGD is the step-size-free PGD at the core of AutoAttack: a momentum step (α = 0.75), a step size that starts at
2·eps and halves at checkpoints where progress stalled, and restarts from the best point found so far. Written
from the paper's description:

- checkpoints ``w_j = ceil(p_j · steps)`` with ``p_0 = 0``, ``p_1 = 0.22``,
  ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``;
- per image, at checkpoint ``w_j`` the step size halves when (1) the loss rose in fewer than ``rho`` (0.75) of the
  steps since ``w_{j-1}``, or (2) the step size was not halved at ``w_{j-1}`` and the best loss has not moved since;
  a halving restarts the image from its best point ``x_max`` (with zero momentum);
- step ``k``: ``z = P(x_k + η · s(∇f(x_k)))``, ``x_{k+1} = P(x_k + α (z - x_k) + (1 - α)(x_k - x_{k-1}))`` with
  ``s`` = sign for L-inf and the normalised gradient for L2, ``α = 1`` on the first step.

The losses are per image (the gradient of their sum), so each image's iterates do not depend on its batch. The
result per image is the first iterate that fooled the model, else the highest-loss point. Choices of ours where the
paper is silent: the random start is the uniform L-inf box (a Gaussian direction with radius ``U(0, 1)·eps`` for
L2), as :func:`robustlab.attacks.pgd`; a restart resets the momentum. AutoAttack's public code rounds the
checkpoints down (``int``) instead of up; on 100 steps the two differ by at most one step per checkpoint.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from robustlab.attacks import _common as c
from robustlab.attacks._registry import ATTACKS
from robustlab.attacks.gradient import _check_arguments, _project_, _random_start
from robustlab.attacks.losses import per_sample_objective
from robustlab.rng import Generators

__all__ = ["apgd", "apgd_checkpoints", "apgd_t"]


def apgd_checkpoints(steps: int) -> list[int]:
    """The iterations at which APGD may halve its step size: ``ceil(p_j · steps)`` for ``p_j < 1`` (j >= 1).

    Example:
        >>> apgd_checkpoints(100)
        [22, 41, 57, 70, 80, 87, 93, 99]
    """
    p = [0.0, 0.22]
    while True:
        nxt = p[-1] + max(p[-1] - p[-2] - 0.03, 0.06)
        if nxt >= 1.0:
            break
        p.append(nxt)
    points = sorted({math.ceil(q * steps - 1e-9) for q in p[1:]})
    return [w for w in points if 0 < w < steps]


def _step_direction(grad: Tensor, norm: str) -> Tensor:
    if norm == "linf":
        return grad.sign()
    norms = torch.linalg.vector_norm(grad.flatten(1), dim=1).add_(1e-12)
    return grad / norms.view(-1, *([1] * (grad.ndim - 1)))


def _project_point(point: Tensor, x: Tensor, eps: float, norm: str) -> Tensor:
    return (x + _project_(point - x, eps, norm)).clamp_(0, 1)


@ATTACKS.register
def apgd(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    eps: float | None = None,
    steps: int = 100,
    norm: str = "linf",
    loss: str = "ce",
    restarts: int = 1,
    rho: float = 0.75,
    targeted: bool = False,
    target_labels: Tensor | None = None,
    init: Tensor | None = None,
    generator: Generators = None,
) -> Tensor:
    """Auto-PGD (APGD-CE / APGD-DLR of AutoAttack): PGD with momentum and an adaptive step size.

    Args:
        model: maps [0, 1] pixels to logits. Its mode is not changed.
        images: clean pixels in [0, 1].
        labels: true classes.
        eps: radius in [0, 1] pixel units; default 8/255 (``"linf"``) or 0.5 (``"l2"``).
        steps: iterations per restart (AutoAttack: 100).
        norm: ``"linf"`` or ``"l2"``.
        loss: ``"ce"`` (APGD-CE), ``"dlr"`` (APGD-DLR; targeted: APGD-T's loss) or ``"cw"``.
        restarts: random restarts; each runs only on the images no earlier restart fooled.
        rho: the fraction of loss-increasing steps below which the step size halves (paper: 0.75).
        targeted: push each image towards ``target_labels``.
        target_labels: target classes, required when ``targeted``.
        init: the initial perturbation of the first restart instead of a random start (projected into the ball).
        generator: draws the random starts; one generator, or one per image.

    Returns:
        Adversarial images within the eps-ball and [0, 1]: per image the first iterate that fooled the model
        (reached the target), else the iterate with the highest loss.

    Shape:
        images ``(N, C, H, W)``, labels ``(N,)`` -> ``(N, C, H, W)``.

    Raises:
        ValueError: as :func:`robustlab.attacks.pgd`, plus ``restarts`` < 1 and ``rho`` outside (0, 1].

    Example:
        >>> x_adv = apgd(model, x, y, eps=8 / 255, steps=100, loss="dlr")  # doctest: +SKIP
    """
    what = "apgd"
    checked = _check_arguments(
        what,
        model,
        images,
        labels,
        eps=eps,
        steps=steps,
        norm=norm,
        loss=loss,
        targeted=targeted,
        target_labels=target_labels,
        init=init,
        generator=generator,
    )
    model, images, labels, eps, steps, num_classes, target, start, generator = checked
    restarts = c.check_positive_int(restarts, "restarts")
    rho = c.check_in_range(rho, "rho", 0, 1, open_low=True)
    if images.shape[0] == 0:
        return images.detach().clone()

    with c.gradients_enabled():
        x, labels, target = c.attack_inputs(model, images, labels, target, what)
        out = x.clone()
        todo = torch.arange(x.shape[0], device=x.device)  # images not fooled yet
        for restart in range(restarts):
            gens = c.subset_generators(generator, todo)
            if restart == 0 and start is not None:
                delta = start[todo]
            else:
                delta = _random_start(x[todo].shape, eps, norm, gens, x)
            sub_target = None if target is None else target[todo]
            adv, fooled = _run(model, x[todo], labels[todo], sub_target, delta, eps, steps, norm, loss, rho,
                               num_classes, first=restart == 0)  # fmt: skip
            out[todo] = adv
            todo = todo[~fooled]
            if not todo.numel():
                break
    return out


def _run(
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    target: Tensor | None,
    delta: Tensor,
    eps: float,
    steps: int,
    norm: str,
    loss: str,
    rho: float,
    num_classes: int | None,
    *,
    first: bool,
    any_class: bool = False,
) -> tuple[Tensor, Tensor]:
    """One APGD run from ``x + delta``: ``(adversarial images, fooled mask)``.

    ``any_class``: a targeted run (the loss pulls towards ``target``) that succeeds on any misclassification, as
    AutoAttack's APGD-T counts it.

    An image's result is fixed by the first iterate that fools the model, so from then on it leaves the batch: each
    step runs the model on the images still standing only. Their iterates are per image, so this changes nothing
    but the time (at 8/255 on a robust CIFAR model most images fall within the first steps).
    """
    n = x.shape[0]
    view = (-1,) + (1,) * (x.ndim - 1)

    def evaluate(point: Tensor, rows: Tensor | None, check: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        y = labels if rows is None else labels[rows]
        t = target if target is None or rows is None else target[rows]
        point = point.detach().requires_grad_(True)
        logits = model(point)
        if check:
            c.check_first_logits(logits, y, t, num_classes, "apgd")
        values = per_sample_objective(logits, y, loss, t)
        (grad,) = torch.autograd.grad(values.sum(), point)
        return values.detach(), grad.detach(), c.fooled(logits, y, None if any_class else t)

    current = _project_point(x + delta, x, eps, norm)
    f_cur, grad, success = evaluate(current, None, check=first)
    if first:  # images already fooled need no step (DLR is flat on misclassified images)
        c.warn_if_zero_gradients(grad[~success], "apgd")
    best, f_best, grad_best = current.clone(), f_cur.clone(), grad.clone()
    fooled = success.clone()
    result = current.clone()  # per image: the first iterate that fooled the model, else the best
    previous = current.clone()
    eta = torch.full((n,), 2.0 * eps, dtype=x.dtype, device=x.device)

    checkpoints = apgd_checkpoints(steps)
    last_check = 0
    increases = torch.zeros(n, dtype=torch.long, device=x.device)
    f_best_at_check = f_best.clone()
    reduced_at_check = torch.ones(n, dtype=torch.bool, device=x.device)  # no condition (2) at the first checkpoint
    for k in range(steps):
        standing = (~fooled).nonzero().squeeze(1)
        if not standing.numel():
            break
        rows = None if standing.numel() == n else standing  # None: every image, no gathers
        with torch.no_grad():
            alpha = 1.0 if k == 0 else 0.75
            cur = current if rows is None else current[rows]
            prev = previous if rows is None else previous[rows]
            step = eta if rows is None else eta[rows]
            x_r = x if rows is None else x[rows]
            z = _project_point(cur + step.view(view) * _step_direction(grad if rows is None else grad[rows], norm),
                               x_r, eps, norm)  # fmt: skip
            moved = _project_point(cur + alpha * (z - cur) + (1 - alpha) * (cur - prev), x_r, eps, norm)
        f_new, g_new, success = evaluate(moved, rows)
        with torch.no_grad():
            idx = standing
            previous[idx], current[idx], grad[idx] = cur, moved, g_new
            result[idx[success]] = moved[success]
            fooled[idx] |= success
            increases[idx] += (f_new > f_cur[idx]).long()
            f_cur[idx] = f_new
            better = f_new > f_best[idx]
            up = idx[better]
            best[up], f_best[up], grad_best[up] = moved[better], f_new[better], g_new[better]
            if k + 1 in checkpoints:
                # fooled images keep their result whatever happens to their step size, so every image is updated
                span = k + 1 - last_check
                stalled = increases.double() < rho * span
                flat = ~reduced_at_check & (f_best <= f_best_at_check)
                halve = stalled | flat
                eta = torch.where(halve, eta / 2, eta)
                # restart the halved images from their best point, without momentum
                current[halve], grad[halve], f_cur[halve] = best[halve], grad_best[halve], f_best[halve]
                previous[halve] = best[halve]
                reduced_at_check, f_best_at_check = halve, f_best.clone()
                increases.zero_()
                last_check = k + 1
    with torch.no_grad():
        result[~fooled] = best[~fooled]
    return result, fooled


@ATTACKS.register
def apgd_t(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    eps: float | None = None,
    steps: int = 100,
    norm: str = "linf",
    n_targets: int = 9,
    rho: float = 0.75,
    generator: Generators = None,
) -> Tensor:
    """APGD-T, AutoAttack's targeted APGD: the targeted DLR loss towards each of the ``n_targets`` next most likely
    classes in turn, each run on the images that the earlier ones left correctly classified.

    Args:
        model: maps [0, 1] pixels to logits. Its mode is not changed.
        images: clean pixels in [0, 1].
        labels: true classes.
        eps: radius in [0, 1] pixel units; default 8/255 (``"linf"``) or 0.5 (``"l2"``).
        steps: iterations per target (AutoAttack: 100).
        norm: ``"linf"`` or ``"l2"``.
        n_targets: how many target classes, taken from the clean logits' ranking below the top one (AutoAttack: 9;
            at most the number of classes - 1).
        rho: APGD's step-size halving threshold.
        generator: draws each target's random start; one generator, or one per image.

    Returns:
        Per image the first misclassified iterate (into any class, as AutoAttack counts it); images that are
        misclassified already or that no target run broke are returned unchanged.

    Shape:
        images ``(N, C, H, W)``, labels ``(N,)`` -> ``(N, C, H, W)``.

    Raises:
        ValueError: as :func:`apgd`, plus ``n_targets`` outside 1..K-1 or a model with fewer than 4 classes (the
            targeted DLR loss needs them).
    """
    what = "apgd_t"
    checked = _check_arguments(
        what,
        model,
        images,
        labels,
        eps=eps,
        steps=steps,
        norm=norm,
        loss="dlr",
        targeted=False,
        target_labels=None,
        init=None,
        generator=generator,
    )
    model, images, labels, eps, steps, num_classes, _, _, generator = checked
    n_targets = c.check_positive_int(n_targets, "n_targets")
    rho = c.check_in_range(rho, "rho", 0, 1, open_low=True)
    if images.shape[0] == 0:
        return images.detach().clone()

    with c.gradients_enabled():
        x, labels, _ = c.attack_inputs(model, images, labels, None, what)
        ranked, todo = c.ranked_targets(model, x, labels, n_targets, what, min_classes=4)  # targeted DLR needs 4
        out = x.clone()
        for k in range(1, n_targets + 1):
            if not todo.numel():
                break
            delta = _random_start(x[todo].shape, eps, norm, c.subset_generators(generator, todo), x)
            adv, fooled = _run(model, x[todo], labels[todo], ranked[todo, k], delta, eps, steps, norm, "dlr",
                               rho, num_classes, first=k == 1, any_class=True)  # fmt: skip
            out[todo[fooled]] = adv[fooled]
            todo = todo[~fooled]
    return out
