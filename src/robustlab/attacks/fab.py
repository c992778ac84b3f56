"""FAB-T (Croce & Hein 2020, "Minimally distorted adversarial examples with a Fast Adaptive Boundary attack"), the
targeted version that AutoAttack runs as its third attack, for the L-inf and L2 norms.

FAB looks for the smallest perturbation that changes the decision. Each step linearises the decision boundary
between the true class ``y`` and a target ``t`` at the current point ``x_k`` (``g = z_y - z_t``, boundary ``g = 0``)
and projects both ``x_k`` and the original image ``x_0`` onto that hyperplane, within the pixel box, at the least
distance in the attack's norm (``δ_k``, ``δ_0``). The next point biases the step towards the original image:

    x_{k+1} = clip((1 - α)(x_k + η δ_k) + α (x_0 + η δ_0)),  α = min(|δ_k| / (|δ_k| + |δ_0|), α_max)

with ``η`` = 1.05 (overshoot) and ``α_max`` = 0.1. When ``x_{k+1}`` is misclassified it is recorded if it is the
closest so far, and the search moves back towards ``x_0``: ``x_{k+1} = x_0 + β (x_{k+1} - x_0)``, ``β`` = 0.9.
AutoAttack's FAB-T runs this once per target, for the 9 next most likely classes, with no random start; an image
counts as broken when the closest misclassified point lies within ``eps``.

The box-constrained projection is solved exactly. With ``w = ∇g`` and the residual ``r = -(g + w·(p - x_k))`` made
non-negative by a sign flip, coordinate ``i`` moves in the direction of ``w_i`` by at most its capacity ``c_i`` (to 1
where ``w_i > 0``, to 0 where ``w_i < 0``). The least-norm step is ``d_i = sign(w_i) min(λ ρ_i, c_i)`` for the
multiplier ``λ`` at which ``Σ |w_i| min(λ ρ_i, c_i) = r``, with ``ρ_i = 1`` for L-inf (every free coordinate moves by
the same amount) and ``ρ_i = |w_i|`` for L2 (the step is ``λ w`` clipped to the box, the KKT solution). That sum is a
piecewise-linear, non-decreasing function of ``λ`` with one breakpoint per coordinate, ``c_i / ρ_i``, so ``λ`` is
found between two sorted breakpoints. Where even every coordinate at its capacity falls short of ``r``, the
hyperplane misses the box and every coordinate moves to its capacity.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab.attacks import _common as c
from robustlab.attacks._registry import ATTACKS
from robustlab.rng import Generators

__all__ = ["fab_t", "project_onto_hyperplane"]


def project_onto_hyperplane(points: Tensor, w: Tensor, residual: Tensor, norm: str = "linf") -> Tensor:
    """The least-norm steps ``d`` with ``w · d = residual`` and ``points + d`` in [0, 1], row by row.

    Args:
        points: ``(R, D)`` points in [0, 1].
        w: ``(R, D)`` hyperplane normals.
        residual: ``(R,)`` how far along ``w`` each point must move.
        norm: ``"linf"`` or ``"l2"``, the norm the step minimises.

    Returns:
        ``(R, D)`` steps. A row whose hyperplane does not meet the box gets the step that comes closest (every
        coordinate at its capacity); a row with ``residual`` 0 gets 0.

    Example:
        >>> project_onto_hyperplane(torch.full((1, 2), 0.5), torch.tensor([[1.0, 3.0]]), torch.tensor([0.4]))
        tensor([[0.1000, 0.1000]])
        >>> project_onto_hyperplane(torch.full((1, 2), 0.5), torch.tensor([[1.0, 3.0]]), torch.tensor([0.4]), "l2")
        tensor([[0.0400, 0.1200]])
    """
    flip = torch.where(residual < 0, -1.0, 1.0).to(w.dtype)
    w = w * flip[:, None]  # the same equation with a non-negative residual
    r = (residual * flip)[:, None]
    weight = w.abs()
    capacity = torch.where(w > 0, 1 - points, torch.where(w < 0, points, torch.zeros_like(points)))
    rate = torch.ones_like(weight) if norm == "linf" else weight
    free = rate > 0
    breaks = torch.where(free, capacity / rate.clamp_min(1e-30), torch.full_like(capacity, torch.inf))
    breaks, order = torch.sort(breaks, dim=1)
    full = (weight * capacity).gather(1, order)  # a saturated coordinate's share of the residual
    slope = (weight * rate).gather(1, order)  # d share / d λ while it is free
    # the residual reached at each breakpoint: the coordinates up to it saturated, the rest still moving
    saturated = torch.cumsum(full, dim=1)
    moving = slope.sum(1, keepdim=True) - torch.cumsum(slope, dim=1)
    reach = saturated + torch.where(moving > 0, breaks * moving, torch.zeros_like(moving))
    k = torch.searchsorted(reach.contiguous(), r.contiguous()).clamp_(max=reach.shape[1] - 1)  # first reach >= r
    before = (k - 1).clamp(min=0)
    sat_before = torch.where(k > 0, saturated.gather(1, before), torch.zeros_like(r))
    moving_before = torch.where(k > 0, moving.gather(1, before), slope.sum(1, keepdim=True))
    lam = ((r - sat_before) / moving_before.clamp_min(1e-30)).clamp_min(0)
    lam = torch.where(reach[:, -1:] < r, torch.full_like(lam, torch.inf), lam)  # the hyperplane misses the box
    return torch.sign(w) * torch.minimum(lam * rate, capacity)


def _norm(d: Tensor, norm: str) -> Tensor:
    return d.abs().amax(1) if norm == "linf" else torch.linalg.vector_norm(d, dim=1)


def _fab_run(model: nn.Module, x0: Tensor, labels: Tensor, target: Tensor, steps: int, alpha_max: float, eta: float,
             beta: float, norm: str = "linf") -> tuple[Tensor, Tensor]:  # fmt: skip
    """One targeted FAB run without random start: ``(closest misclassified point or x0, its distance or inf)``."""
    n = x0.shape[0]
    flat0 = x0.flatten(1)
    best = x0.clone()
    best_dist = torch.full((n,), torch.inf, device=x0.device)
    current = x0.clone()
    rows = torch.arange(n, device=x0.device)
    for _ in range(steps):
        point = current.detach().requires_grad_(True)
        logits = model(point)
        g = logits[rows, labels] - logits[rows, target]
        (grad,) = torch.autograd.grad(g.sum(), point)
        with torch.no_grad():
            w = grad.flatten(1)
            flat = current.flatten(1)
            r_cur = -g.detach()
            r_orig = -(g.detach() + (w * (flat0 - flat)).sum(1))
            both = project_onto_hyperplane(torch.cat([flat, flat0]), torch.cat([w, w]), torch.cat([r_cur, r_orig]),
                                           norm)  # fmt: skip
            d_cur, d_orig = both[:n], both[n:]
            a_cur = _norm(d_cur, norm).clamp_min(1e-8)
            a_orig = _norm(d_orig, norm).clamp_min(1e-8)
            alpha = (a_cur / (a_cur + a_orig)).clamp(0, alpha_max)[:, None]
            moved = ((1 - alpha) * (flat + eta * d_cur) + alpha * (flat0 + eta * d_orig)).clamp_(0, 1)
            current = moved.view_as(x0)
            wrong = model(current).argmax(1) != labels
            dist = _norm(moved - flat0, norm)
            closer = wrong & (dist < best_dist)
            best[closer], best_dist[closer] = current[closer], dist[closer]
            current = torch.where(wrong.view(-1, 1, 1, 1), x0 + beta * (current - x0), current)
    return best, best_dist


@ATTACKS.register
def fab_t(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    eps: float | None = None,
    norm: str = "linf",
    steps: int = 100,
    n_targets: int = 9,
    alpha_max: float = 0.1,
    eta: float = 1.05,
    beta: float = 0.9,
    generator: Generators = None,
) -> Tensor:
    """FAB-T: the minimal-perturbation boundary attack towards each of the next most likely classes.

    Args:
        model: maps [0, 1] pixels to logits. Its mode is not changed.
        images: clean pixels in [0, 1].
        labels: true classes.
        eps: radius in [0, 1] pixel units that counts as broken; default 8/255 (``"linf"``) or 0.5 (``"l2"``).
        norm: ``"linf"`` or ``"l2"``: the norm of the perturbation FAB minimises.
        steps: iterations per target (AutoAttack: 100).
        n_targets: target classes from the clean logits' ranking below the top one (AutoAttack: 9).
        alpha_max: the most weight a step gives the projection of the original image (paper: 0.1).
        eta: overshoot of the projections (paper: 1.05).
        beta: backward step towards the original image after a success (paper: 0.9).
        generator: unused (no random start, as AutoAttack's FAB-T); accepted for the common signature.

    Returns:
        Per image the closest misclassified point when it lies within ``eps``; otherwise (and for images
        misclassified from the start) the clean image.

    Shape:
        images ``(N, C, H, W)``, labels ``(N,)`` -> ``(N, C, H, W)``.

    Raises:
        ValueError: bad images, labels, eps, norm, steps, n_targets (1..K-1) or step parameters.
    """
    what = "fab_t"
    model = c.check_model(model, what)
    images, labels = c.check_inputs(model, images, labels, what)
    norm = c.check_choice(norm, c.NORMS, "norm")
    eps = c.check_eps(eps, norm)
    steps = c.check_positive_int(steps, "steps")
    n_targets = c.check_positive_int(n_targets, "n_targets")
    alpha_max = c.check_in_range(alpha_max, "alpha_max", 0, 1)
    eta = c.check_in_range(eta, "eta", 1, 2)
    beta = c.check_in_range(beta, "beta", 0, 1)
    c.check_generators(generator, images.shape[0])
    if images.shape[0] == 0:
        return images.detach().clone()

    with c.gradients_enabled():
        x, labels, _ = c.attack_inputs(model, images, labels, None, what)
        ranked, todo = c.ranked_targets(model, x, labels, n_targets, what)
        out = x.clone()
        for k in range(1, n_targets + 1):
            if not todo.numel():
                break
            adv, dist = _fab_run(model, x[todo], labels[todo], ranked[todo, k], steps, alpha_max, eta, beta, norm)
            broken = dist <= eps
            out[todo[broken]] = adv[broken]
            todo = todo[~broken]
    return out
