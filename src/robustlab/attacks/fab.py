"""FAB-T (Croce & Hein 2020, "Minimally distorted adversarial examples with a Fast Adaptive Boundary attack"), the
targeted L-inf version that AutoAttack runs as its third attack.

FAB looks for the smallest perturbation that changes the decision. Each step linearises the decision boundary
between the true class ``y`` and a target ``t`` at the current point ``x_k`` (``g = z_y - z_t``, boundary ``g = 0``)
and projects both ``x_k`` and the original image ``x_0`` onto that hyperplane, within the pixel box, at the least
L-inf distance (``δ_k``, ``δ_0``). The next point biases the step towards the original image:

    x_{k+1} = clip((1 - α)(x_k + η δ_k) + α (x_0 + η δ_0)),  α = min(|δ_k| / (|δ_k| + |δ_0|), α_max)

with ``η`` = 1.05 (overshoot) and ``α_max`` = 0.1. When ``x_{k+1}`` is misclassified it is recorded if it is the
closest so far, and the search moves back towards ``x_0``: ``x_{k+1} = x_0 + β (x_{k+1} - x_0)``, ``β`` = 0.9.
AutoAttack's FAB-T runs this once per target, for the 9 next most likely classes, with no random start; an image
counts as broken when the closest misclassified point lies within ``eps``.

The box-constrained projection is solved exactly: with ``w = ∇g`` and the residual ``r = -(g + w·(p - x_k))`` made
non-negative by a sign flip, coordinate ``i`` can move by at most its capacity ``c_i`` (to 1 where ``w_i > 0``, to 0
where ``w_i < 0``), so a budget ``λ`` reaches ``M(λ) = Σ |w_i| min(λ, c_i)``, a concave piecewise-linear function.
The least ``λ`` with ``M(λ) = r`` is found between two sorted capacities, and ``d_i = sign(w_i) min(λ, c_i)``.
Where even ``M(∞) < r`` the hyperplane lies outside the box, and every coordinate moves to its capacity.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab.attacks import _common as c
from robustlab.attacks._registry import ATTACKS

__all__ = ["fab_t", "project_linf_box"]


def project_linf_box(points: Tensor, w: Tensor, residual: Tensor) -> Tensor:
    """The least-L-inf steps ``d`` with ``w · d = residual`` and ``points + d`` in [0, 1], row by row.

    Args:
        points: ``(R, D)`` points in [0, 1].
        w: ``(R, D)`` hyperplane normals.
        residual: ``(R,)`` how far along ``w`` each point must move.

    Returns:
        ``(R, D)`` steps. A row whose hyperplane does not meet the box gets the step that comes closest (every
        coordinate at its capacity); a row with ``residual`` 0 gets 0.

    Example:
        >>> project_linf_box(torch.full((1, 2), 0.5), torch.tensor([[1.0, 1.0]]), torch.tensor([0.2]))
        tensor([[0.1000, 0.1000]])
    """
    flip = torch.where(residual < 0, -1.0, 1.0).to(w.dtype)
    w = w * flip[:, None]
    r = residual * flip
    weight = w.abs()
    capacity = torch.where(w > 0, 1 - points, torch.where(w < 0, points, torch.zeros_like(points)))
    capacity, order = torch.sort(capacity, dim=1)
    weight = weight.gather(1, order)
    # M at each capacity c_(k): the coordinates up to k saturated, the rest at c_(k)
    saturated = torch.cumsum(weight * capacity, dim=1)
    rest = weight.sum(1, keepdim=True) - torch.cumsum(weight, dim=1)
    reach = saturated + capacity * rest
    k = torch.searchsorted(reach.contiguous(), r[:, None].contiguous()).clamp_(max=reach.shape[1] - 1)  # first M >= r
    before = k - 1
    sat_before = torch.where(before >= 0, saturated.gather(1, before.clamp(min=0)), torch.zeros_like(r[:, None]))
    rest_before = torch.where(before >= 0, rest.gather(1, before.clamp(min=0)), weight.sum(1, keepdim=True))
    lam = ((r[:, None] - sat_before) / rest_before.clamp_min(1e-30)).clamp_min(0)
    outside = reach[:, -1:] < r[:, None]  # the hyperplane misses the box: go as far as the box allows
    lam = torch.where(outside, torch.full_like(lam, torch.inf), lam)
    step = torch.minimum(lam, torch.where(w > 0, 1 - points, torch.where(w < 0, points, torch.zeros_like(points))))
    return torch.sign(w) * step  # w was flipped with the residual: the same equation, the same steps


def _fab_run(model: nn.Module, x0: Tensor, labels: Tensor, target: Tensor, steps: int, alpha_max: float, eta: float,
             beta: float) -> tuple[Tensor, Tensor]:  # fmt: skip
    """One targeted FAB run without random start: ``(closest misclassified point or x0, its L-inf distance or inf)``."""
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
            both = project_linf_box(torch.cat([flat, flat0]), torch.cat([w, w]), torch.cat([r_cur, r_orig]))
            d_cur, d_orig = both[:n], both[n:]
            a_cur = d_cur.abs().amax(1).clamp_min(1e-8)
            a_orig = d_orig.abs().amax(1).clamp_min(1e-8)
            alpha = (a_cur / (a_cur + a_orig)).clamp(0, alpha_max)[:, None]
            moved = ((1 - alpha) * (flat + eta * d_cur) + alpha * (flat0 + eta * d_orig)).clamp_(0, 1)
            current = moved.view_as(x0)
            wrong = model(current).argmax(1) != labels
            dist = (moved - flat0).abs().amax(1)
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
    steps: int = 100,
    n_targets: int = 9,
    alpha_max: float = 0.1,
    eta: float = 1.05,
    beta: float = 0.9,
    generator: torch.Generator | list[torch.Generator] | None = None,
) -> Tensor:
    """FAB-T (L-inf): the minimal-perturbation boundary attack towards each of the next most likely classes.

    Args:
        model: maps [0, 1] pixels to logits. Its mode is not changed.
        images: clean pixels in [0, 1].
        labels: true classes.
        eps: L-inf radius in [0, 1] pixel units that counts as broken; default 8/255.
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
        ValueError: bad images, labels, eps, steps, n_targets (1..K-1) or step parameters.
    """
    what = "fab_t"
    model = c.check_model(model, what)
    images, labels = c.check_inputs(model, images, labels, what)
    eps = c.DEFAULT_EPS["linf"] if eps is None else c.check_nonnegative(
        eps, "eps", " (the linf radius in [0, 1] pixel units, e.g. 8/255)")  # fmt: skip
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
            adv, dist = _fab_run(model, x[todo], labels[todo], ranked[todo, k], steps, alpha_max, eta, beta)
            broken = dist <= eps
            out[todo[broken]] = adv[broken]
            todo = todo[~broken]
    return out
