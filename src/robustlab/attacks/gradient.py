"""Gradient attacks in pixel space: FGSM and PGD (L-inf and L2), untargeted or targeted, CE or DLR loss.

PGD follows Madry et al. (2018) step for step as torchattacks implements it (``PGD`` / ``PGDL2``): a random start
in the eps-ball, then ``steps`` ascent steps, each projected back into the eps-ball and [0, 1]:

- L-inf: ``x' = clip01(x + clip_eps(x' + a * sign(g) - x))``;
- L2: ``x' = clip01(x + P_eps(x' + a * g / (||g|| + 1e-10) - x))`` where ``P_eps`` rescales onto the ball.

Given the same start (``init``), the iterates equal torchattacks' to float rounding. The L2 random start is also
torchattacks': a Gaussian direction scaled to a radius ``U(0, 1) * eps``. FGSM is one such step of size ``eps``
from the clean image (for ``norm="l2"``: the fast gradient method).

Gradients come from ``torch.autograd.grad`` on the input only, so parameter ``.grad`` is never touched and the
attack can run inside a training step; the model's mode is never changed. The loop reuses one buffer and updates it
in place.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab import rng
from robustlab.attacks import _common as c
from robustlab.attacks._registry import ATTACKS
from robustlab.attacks.losses import attack_objective
from robustlab.rng import Generators

__all__ = ["fgsm", "pgd"]


def _random_start(shape: torch.Size, eps: float, norm: str, generator: c.Generators, like: Tensor) -> Tensor:
    if norm == "linf":
        return rng.uniform(shape, -eps, eps, generator=generator, device=like.device, dtype=like.dtype)
    direction = rng.randn(shape, generator=generator, device=like.device, dtype=like.dtype)
    radius = rng.rand((shape[0],), generator=generator, device=like.device, dtype=like.dtype)
    norms = torch.linalg.vector_norm(direction.flatten(1), dim=1)
    return direction * (radius / norms * eps).view(-1, *([1] * (len(shape) - 1)))


def _project_(delta: Tensor, eps: float, norm: str) -> Tensor:
    """Project ``delta`` onto the eps-ball in place."""
    if norm == "linf":
        return delta.clamp_(-eps, eps)
    norms = torch.linalg.vector_norm(delta.flatten(1), dim=1)
    # min(eps / ||d||, 1) without 0 / 0 when eps = 0 and d = 0
    factor = torch.where(norms > eps, eps / norms, torch.ones_like(norms))
    return delta.mul_(factor.view(-1, *([1] * (delta.ndim - 1))))


def _check_init(init: object, images: Tensor) -> Tensor:
    if not isinstance(init, Tensor) or tuple(init.shape) != tuple(images.shape) or not init.is_floating_point():
        got = f"shape {tuple(init.shape)} {init.dtype}" if isinstance(init, Tensor) else type(init).__name__
        raise ValueError(
            f"init must be a float tensor shaped like images {tuple(images.shape)} (the initial perturbation "
            f"delta, projected into the eps-ball), got {got}"
        )
    if not bool(torch.isfinite(init).all()):
        raise ValueError("init contains NaN or infinite values")
    return init.detach().to(device=images.device, dtype=images.dtype)


def _check_arguments(
    what: str,
    model: object,
    images: object,
    labels: object,
    *,
    eps: float | None,
    steps: object,
    norm: object,
    loss: object,
    targeted: bool,
    target_labels: Tensor | None,
    init: Tensor | None,
    generator: object,
) -> tuple[nn.Module, Tensor, Tensor, float, int, int | None, Tensor | None, Tensor | None, c.Generators]:
    """The checks every gradient attack shares, in one order, with one set of messages.

    Returns:
        ``(model, images, labels, eps, steps, num_classes or None, target labels or None, init or None,
        generator)``, with ``norm`` and ``loss`` checked (pass them on as given).
    """
    model = c.check_model(model, what)
    images, labels = c.check_inputs(model, images, labels, what)
    norm = c.check_choice(norm, c.NORMS, "norm")
    c.check_choice(loss, c.LOSSES, "loss")
    eps = c.check_eps(eps, norm)
    steps = c.check_positive_int(steps, "steps")
    num_classes = c.model_classes(model)
    target = c.check_target_labels(targeted, target_labels, images.shape[0], num_classes, images.device)
    generator = c.check_generators(generator, images.shape[0])
    start = _check_init(init, images) if init is not None else None
    return model, images, labels, eps, steps, num_classes, target, start, generator


def _gradient_attack(
    what: str,
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    eps: float | None,
    steps: int,
    step_size: float | None,
    norm: str,
    loss: str,
    targeted: bool,
    target_labels: Tensor | None,
    random_start: bool,
    init: Tensor | None,
    early_stop: bool,
    generator: c.Generators,
) -> Tensor:
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
    step_size = 2.5 * eps / steps if step_size is None else c.check_nonnegative(step_size, "step_size")
    if not isinstance(random_start, bool):
        raise ValueError(f"random_start must be True or False, got {random_start!r}")
    if not isinstance(early_stop, bool):
        raise ValueError(f"early_stop must be True or False, got {early_stop!r}")
    if images.shape[0] == 0:
        return images.detach().clone()

    with c.gradients_enabled():
        x, labels, target = c.attack_inputs(model, images, labels, target, what)
        if start is None and random_start:
            start = _random_start(x.shape, eps, norm, generator, x)
        # the one buffer the loop updates in place: x + delta, kept inside the eps-ball and [0, 1]
        adv = x.clone() if start is None else (x + _project_(start.clone(), eps, norm)).clamp_(0, 1)
        view = (-1,) + (1,) * (x.ndim - 1)
        # early stopping: rows of `adv` are the images still attacked, `rows` their positions in `out`
        out, rows = (x.clone(), torch.arange(x.shape[0], device=x.device)) if early_stop else (None, None)
        for step in range(steps):
            adv.requires_grad_(True)
            logits = model(adv)
            if step == 0:
                c.check_first_logits(logits, labels, target, num_classes, what)
            objective = attack_objective(logits, labels, loss, target)
            (grad,) = torch.autograd.grad(objective, adv)
            adv.requires_grad_(False)
            grad = grad.contiguous()  # updated in place below; an expanded gradient would refuse that
            if step == 0 or out is not None:
                done = c.fooled(logits, labels, target)
                if step == 0:
                    # images already misclassified (reaching their target) need no step: DLR is flat on many
                    c.warn_if_zero_gradients(grad[~done], what)
                if out is not None and rows is not None and bool(done.any()):  # rows is set with out
                    out[rows[done]] = adv[done]
                    keep = ~done
                    adv, grad, x, labels, rows = adv[keep], grad[keep], x[keep], labels[keep], rows[keep]
                    target = None if target is None else target[keep]
                    if not rows.numel():
                        break
            del logits, objective  # free the graph's activations before the update
            with torch.no_grad():
                if norm == "linf":
                    adv.add_(grad.sign_(), alpha=step_size)
                    adv.sub_(x).clamp_(-eps, eps)
                else:
                    grad_norms = torch.linalg.vector_norm(grad.flatten(1), dim=1).add_(1e-10)
                    # scale, then add: the rounding of torchattacks' `adv + alpha * g` (add_(alpha=) may fuse)
                    adv.add_(grad.div_(grad_norms.view(view)).mul_(step_size))
                    _project_(adv.sub_(x), eps, norm)
                adv.add_(x).clamp_(0, 1)  # adv held delta for two lines; it is x + delta again
        if out is None:
            return adv.detach()
        out[rows] = adv
    return out


@ATTACKS.register
def pgd(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    eps: float | None = None,
    steps: int = 10,
    step_size: float | None = None,
    norm: str = "linf",
    loss: str = "ce",
    targeted: bool = False,
    target_labels: Tensor | None = None,
    random_start: bool = True,
    init: Tensor | None = None,
    early_stop: bool = False,
    generator: Generators = None,
) -> Tensor:
    """Projected gradient descent (Madry et al. 2018) in pixel space, L-inf or L2.

    Returns the last iterate (as Madry et al. and torchattacks), or with ``early_stop`` the first iterate that
    fools the model; :func:`worst_case` keeps, per image, the first attack that fools it.

    Args:
        model: maps [0, 1] pixels to logits (a robustlab Classifier normalises inside). Its mode is not changed.
        images: clean pixels in [0, 1].
        labels: true classes.
        eps: radius of the perturbation ball in [0, 1] pixel units; default 8/255 for ``"linf"``, 0.5 for
            ``"l2"`` (the RobustBench CIFAR-10 budgets).
        steps: number of ascent steps (default 10).
        step_size: size of each step; default ``2.5 * eps / steps`` (Madry et al.), which is torchattacks'
            ``alpha = 2/255`` at the default eps 8/255 and 10 steps.
        norm: ``"linf"`` (sign steps, box projection) or ``"l2"`` (normalised steps, ball projection).
        loss: ``"ce"`` (cross-entropy), ``"cw"`` (Carlini-Wagner margin, "C&W-inf" PGD) or ``"dlr"`` (AutoAttack's
            scale-invariant margin loss; needs >= 3 classes, >= 4 targeted).
        targeted: push each image towards ``target_labels`` instead of away from ``labels``.
        target_labels: the target classes, required when ``targeted``.
        random_start: start from a random point of the eps-ball (uniform box for L-inf; Gaussian direction with
            radius ``U(0, 1) * eps`` for L2) instead of the clean image.
        init: an explicit initial perturbation ``delta`` (projected into the eps-ball, then ``x + delta`` is
            clipped to [0, 1]); replaces the random start, e.g. to reproduce another library's start.
        early_stop: stop attacking an image as soon as an iterate fools the model (targeted: reaches its target)
            and return that iterate; later steps run on the remaining images only. Robust accuracy can only be
            lower than with the last iterate, at a fraction of the cost on non-robust models. Default off, so the
            iterates are exactly Madry's / torchattacks'.
        generator: draws the random start; one generator, or one per image so that an image's start does not
            depend on its batch. None uses torch's global generator.

    Returns:
        Adversarial images with ``||x_adv - x|| <= eps`` and values in [0, 1], on the images' device and dtype.

    Shape:
        images ``(N, C, H, W)``, labels ``(N,)`` -> ``(N, C, H, W)``.

    Raises:
        ValueError: bad images or labels (shape, dtype, range, a label outside the model's classes), an unknown
            ``norm`` or ``loss``, ``eps`` or ``step_size`` < 0, ``steps`` < 1, ``targeted`` without
            ``target_labels`` (or the reverse), an ``init`` not shaped like the images, a generator list of the
            wrong length, or DLR with too few classes.

    Warns:
        UserWarning: model in train mode; outputs that look like probabilities; a randomised forward pass;
            images with an all-zero input gradient.

    Example:
        >>> model = create_model("cifar:resnet20", pretrained=False)
        >>> x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
        >>> x_adv = pgd(model, x, y, eps=8 / 255, steps=20, generator=torch.Generator().manual_seed(0))
        >>> bool((x_adv - x).abs().max() <= 8 / 255 + 1e-6)
        True
    """
    return _gradient_attack(
        "pgd",
        model,
        images,
        labels,
        eps=eps,
        steps=steps,
        step_size=step_size,
        norm=norm,
        loss=loss,
        targeted=targeted,
        target_labels=target_labels,
        random_start=random_start,
        init=init,
        early_stop=early_stop,
        generator=generator,
    )


@ATTACKS.register
def fgsm(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    eps: float | None = None,
    norm: str = "linf",
    loss: str = "ce",
    targeted: bool = False,
    target_labels: Tensor | None = None,
    generator: Generators = None,
) -> Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size ``eps`` from the clean image.

    With ``norm="l2"`` it is the fast gradient method: one step of L2 length ``eps`` along the gradient. It is
    :func:`pgd` with ``steps=1``, ``step_size=eps`` and no random start.

    Args:
        model: maps [0, 1] pixels to logits. Its mode is not changed.
        images: clean pixels in [0, 1].
        labels: true classes.
        eps: step size and radius; default 8/255 (``"linf"``) or 0.5 (``"l2"``).
        norm: ``"linf"`` or ``"l2"``.
        loss: ``"ce"`` or ``"dlr"``.
        targeted: step towards ``target_labels``.
        target_labels: target classes, required when ``targeted``.
        generator: unused (FGSM is deterministic); accepted for the uniform attack signature.

    Returns:
        Adversarial images in the eps-ball and [0, 1].

    Shape:
        images ``(N, C, H, W)``, labels ``(N,)`` -> ``(N, C, H, W)``.

    Raises:
        ValueError: as :func:`pgd`.
    """
    eps_value = c.DEFAULT_EPS.get(norm, 0.0) if eps is None else eps
    return _gradient_attack(
        "fgsm",
        model,
        images,
        labels,
        eps=eps,
        steps=1,
        step_size=eps_value,
        norm=norm,
        loss=loss,
        targeted=targeted,
        target_labels=target_labels,
        random_start=False,
        init=None,
        early_stop=False,
        generator=generator,
    )
