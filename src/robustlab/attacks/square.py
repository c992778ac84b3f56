"""Square Attack (Andriushchenko et al. 2020, "Square Attack: a query-efficient black-box adversarial attack via
random search"), the L-inf version that AutoAttack runs after its gradient attacks.

It needs the model's scores only, never a gradient, so it is the standard check that a defence's robustness is not
an artefact of masked or obfuscated gradients. Written from the paper's description (Algorithm 1 and section 3.1):

- start: vertical stripes, every column of every channel shifted by ``±eps`` (a random sign each);
- step ``i``: pick a square of side ``s_i`` at a random position and set it, per channel, to ``x ± eps`` with a
  random sign vector; keep the candidate if the loss (the margin ``z_y - max_{k != y} z_k`` by default) went down;
- the square's area is the fraction ``p_i`` of the image: ``p_init`` halved at the iterations 10, 50, 200, 500,
  1k, 2k, 4k, 6k and 8k of a 10k-query schedule (rescaled to ``queries``), so ``s_i = round(sqrt(p_i · H · W))``;
- an image stops as soon as it is fooled.

Per image, as in the authors' code (AutoAttack's PyTorch port draws one position for the whole batch): each image has
its own square, signs and stream of random numbers, so its result does not depend on its batch when a generator per
image is given. The authors redraw a candidate that would leave the image unchanged; here the sign vector is drawn
from the ones that change something, which is the same distribution.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from robustlab import rng
from robustlab.attacks import _common as c
from robustlab.attacks._registry import ATTACKS
from robustlab.attacks.losses import per_sample_objective
from robustlab.rng import Generators

__all__ = ["square", "square_fraction"]

SQUARE_LOSSES = ("margin", "ce")
# iterations (of a 10,000-query run) after which p halves again: the schedule of the authors' code
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
_DRAW_BLOCK = 64  # random numbers are drawn for this many iterations at a time


def square_fraction(iteration: int, queries: int, p_init: float = 0.8) -> float:
    """The fraction of the image that the square covers at ``iteration`` (0-based) of a ``queries`` run.

    Example:
        >>> square_fraction(0, 10_000), square_fraction(100, 10_000), square_fraction(9_000, 10_000)
        (0.8, 0.2, 0.0015625)
    """
    scaled = int(iteration / queries * 10_000)
    return p_init / 2 ** sum(scaled > h for h in _HALVINGS)


def _objective(logits: Tensor, labels: Tensor, target: Tensor | None, loss: str) -> Tensor:
    """The loss per image that the search lowers: the margin (negative once fooled) or the signed cross-entropy.

    Both are the gradient attacks' objectives with the sign turned: the margin is minus the C&W loss.
    """
    return -per_sample_objective(logits.detach().float(), labels, "cw" if loss == "margin" else "ce", target)


@ATTACKS.register
def square(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    eps: float | None = None,
    queries: int = 5000,
    p_init: float = 0.8,
    loss: str = "margin",
    targeted: bool = False,
    target_labels: Tensor | None = None,
    generator: Generators = None,
) -> Tensor:
    """Square Attack (L-inf): score-based random search for an adversarial example, no gradients needed.

    Args:
        model: maps [0, 1] pixels to logits; only its outputs are used. Its mode is not changed.
        images: clean pixels in [0, 1], at least 2 x 2.
        labels: true classes.
        eps: L-inf radius in [0, 1] pixel units; default 8/255.
        queries: random-search iterations after the start, one model query each (AutoAttack: 5000).
        p_init: the start's square area as a fraction of the image (AutoAttack: 0.8; the paper's ImageNet
            runs: 0.05).
        loss: ``"margin"`` (the paper's, ``z_y - max_{k != y} z_k``) or ``"ce"`` (cross-entropy).
        targeted: push each image towards ``target_labels`` (then the margin is ``max_{k != t} z_k - z_t``).
        target_labels: target classes, required when ``targeted``.
        generator: draws the stripes, squares and signs; one generator, or one per image.

    Returns:
        Adversarial images in the eps-ball and [0, 1]: per image the first fooling candidate, else the lowest-loss
        one.

    Shape:
        images ``(N, C, H, W)``, labels ``(N,)`` -> ``(N, C, H, W)``.

    Raises:
        ValueError: bad images, labels, eps, queries, p_init, loss, targets or generators.

    Example:
        >>> x_adv = square(model, x, y, eps=8 / 255, queries=1000)  # doctest: +SKIP
    """
    what = "square"
    model = c.check_model(model, what)
    images, labels = c.check_inputs(model, images, labels, what)
    eps = c.check_eps(eps, "linf")
    queries = c.check_positive_int(queries, "queries")
    p_init = c.check_in_range(p_init, "p_init", 0, 1, open_low=True)
    loss = c.check_choice(loss, SQUARE_LOSSES, "loss")
    if images.ndim != 4 or min(images.shape[-2:]) < 2 or images.shape[1] > 16:
        raise ValueError(
            f"square needs images (N, C, H, W) of at least 2 x 2 pixels and at most 16 channels (one sign per channel "
            f"is drawn as one of 2**C codes), got {tuple(images.shape)}"
        )
    num_classes = c.model_classes(model)
    target = c.check_target_labels(targeted, target_labels, images.shape[0], num_classes, images.device)
    generator = c.check_generators(generator, images.shape[0])
    if images.shape[0] == 0:
        return images.detach().clone()

    x, labels, target = c.attack_inputs(model, images, labels, target, what)
    with torch.no_grad():
        return _search(model, x, labels, target, float(eps), queries, p_init, loss, num_classes, generator)


def _search(
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    target: Tensor | None,
    eps: float,
    queries: int,
    p_init: float,
    loss: str,
    num_classes: int | None,
    generator: c.Generators,
) -> Tensor:
    n, channels, height, width = x.shape
    dev = x.device
    # the signs of the current best point: best = clip(x + eps * signs)
    stripes = rng.rand((n, channels, 1, width), generator=generator, device=dev) < 0.5
    signs = torch.where(stripes, 1.0, -1.0).to(x.dtype).expand(n, channels, height, width).contiguous()
    best = (x + eps * signs).clamp_(0, 1)
    logits = model(best)
    c.check_first_logits(logits, labels, target, num_classes, "square")
    best_loss = _objective(logits, labels, target, loss)
    done = c.fooled(logits, labels, target)

    # bit k of a sign code is channel k's sign (1: +eps)
    bits = 2 ** torch.arange(channels, device=dev)
    codes = 2**channels
    rows, cols = torch.arange(height, device=dev), torch.arange(width, device=dev)
    # the images still standing, compacted: their indices and state; rebuilt only when some fall
    idx = (~done).nonzero().squeeze(1)
    xs, ss, bs, ls = x[idx], signs[idx], best[idx], best_loss[idx]
    ys, ts = labels[idx], None if target is None else target[idx]
    draws = torch.empty(0)
    for i in range(queries):
        if not idx.numel():
            break
        m = idx.numel()
        if i % _DRAW_BLOCK == 0:
            # per image: position (2), sign code (1), the code used when the square is already uniform (1)
            block = min(_DRAW_BLOCK, queries - i)
            draws = rng.rand((m, block, 4), generator=c.subset_generators(generator, idx), device=dev)
        u = draws[:, i % _DRAW_BLOCK]
        side = max(int(round(math.sqrt(square_fraction(i, queries, p_init) * height * width))), 1)
        side = min(side, height - 1, width - 1)
        top = (u[:, 0] * (height - side)).long()
        left = (u[:, 1] * (width - side)).long()
        inside_h = (rows >= top[:, None]) & (rows < (top + side)[:, None])
        inside_w = (cols >= left[:, None]) & (cols < (left + side)[:, None])
        window = (inside_h[:, :, None] & inside_w[:, None, :])[:, None]  # (m, 1, H, W)

        code = (u[:, 2] * codes).long().clamp_(max=codes - 1)
        # a square already of one sign vector must change: draw among the other codes (the authors redraw)
        corner = ss[torch.arange(m, device=dev), :, top, left]  # (m, C)
        corner_code = ((corner > 0).long() * bits).sum(1)
        uniform = ~((ss != corner[:, :, None, None]) & window).flatten(1).any(1)
        other = corner_code ^ (1 + (u[:, 3] * (codes - 1)).long().clamp_(max=codes - 2))
        code = torch.where(uniform, other, code)
        new_signs = torch.where((code[:, None] & bits) > 0, 1.0, -1.0).to(x.dtype)
        candidate_signs = torch.where(window, new_signs[:, :, None, None], ss)
        candidate = (xs + eps * candidate_signs).clamp_(0, 1)

        logits = model(candidate)
        cand_loss = _objective(logits, ys, ts, loss)
        fooled = c.fooled(logits, ys, ts)
        better = (cand_loss < ls) | fooled
        ss[better], bs[better], ls[better] = candidate_signs[better], candidate[better], cand_loss[better]
        if bool(fooled.any()):
            # the fallen keep their fooling point; the rest are compacted
            best[idx], best_loss[idx] = bs, ls
            stay = ~fooled
            idx, xs, ss, bs, ls, ys = idx[stay], xs[stay], ss[stay], bs[stay], ls[stay], ys[stay]
            ts = None if ts is None else ts[stay]
            draws = draws[stay]
    best[idx] = bs
    return best
