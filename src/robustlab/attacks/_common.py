"""Shared pieces of the attacks: argument checks, AutoAttack-style sanity warnings, generator subsets.

The sanity checks follow AutoAttack's (Croce & Hein 2020, ``autoattack/checks.py``): each suspicious but legal state
gets a ``warnings.warn`` that names the cause and the fix. They run once per attack call and cost two forwards on
two images at most; everything else is read off tensors the attack computes anyway (the first step's logits and
input gradient).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

# check_choice and Generators have one home each (layer 0); re-exported so the attacks keep calling c.check_choice
from robustlab._checks import check_choice as check_choice
from robustlab._checks import check_images, check_labels, warn_if_training
from robustlab.models.custom import warn_if_unwrapped
from robustlab.rng import Generators as Generators

NORMS = ("linf", "l2")
LOSSES = ("ce", "dlr", "cw")

# literature defaults: eps 8/255 (Madry et al. 2018, RobustBench CIFAR-10 Linf) and 0.5 (RobustBench CIFAR-10 L2)
DEFAULT_EPS: dict[str, float] = {"linf": 8 / 255, "l2": 0.5}


def check_model(model: object, what: str) -> nn.Module:
    """The model, checked to be a module; a plain one (not a Classifier) warns once that it gets raw pixels."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"{what} needs a torch.nn.Module that maps images to logits, got {type(model).__name__}")
    warn_if_unwrapped(model, what)
    return model


def check_inputs(model: nn.Module, images: object, labels: object, what: str) -> tuple[Tensor, Tensor]:
    """Validate images and labels; labels move to the images' device. Class range checked when the model knows K."""
    images = check_images(images)
    labels = check_labels(labels, images.shape[0], num_classes=model_classes(model))
    return images, labels.to(images.device)


def check_label_range(labels: Tensor, num_classes: int, name: str = "labels") -> None:
    """Range check against the logits' class count (for models that do not expose ``num_classes``)."""
    if labels.numel():
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"{name} must lie in [0, {num_classes}) (the model has {num_classes} outputs), got range [{lo}, {hi}]"
            )


def check_nonnegative(value: object, name: str, hint: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0{hint}, got {value!r}")
    return float(value)


def check_eps(eps: object, norm: str) -> float:
    """The attack radius: the norm's literature default for None, else a finite number >= 0.

    Raises:
        ValueError: a negative, infinite or non-numeric radius.

    Warns:
        UserWarning: an L-inf radius above 1 (see :func:`warn_if_pixel_scale`).
    """
    if eps is None:
        return DEFAULT_EPS[norm]
    value = check_nonnegative(eps, "eps", f" (the {norm} radius in [0, 1] pixel units, e.g. 8/255)")
    if norm == "linf":
        warn_if_pixel_scale(value)
    return value


def warn_if_pixel_scale(eps: float, name: str = "eps") -> None:
    """Warn when an L-inf radius exceeds 1, the whole [0, 1] pixel range: almost always a forgotten ``/255``.

    Such a radius is legal (every image in the box is allowed) but the attack then measures nothing a user meant:
    ``pgd:eps=8`` runs at 2040/255. L2 radii above 1 are common (3.0 on ImageNet) and are left alone.
    """
    if eps > 1:
        shown = f"{eps:g}"
        warnings.warn(
            f"{name}={shown} exceeds 1, the whole [0, 1] pixel range, so the L-inf ball allows any image; "
            f"did you mean {name}={shown}/255?",
            UserWarning,
            stacklevel=3,
        )


def model_classes(model: nn.Module) -> int | None:
    """The class count the model declares (``num_classes``), or None when it does not."""
    k = getattr(model, "num_classes", None)
    return k if isinstance(k, int) else None


def check_in_range(value: object, name: str, low: float, high: float, *, open_low: bool = False) -> float:
    """A number in [low, high] (or (low, high] with ``open_low``), as a float."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (low < value if open_low else low <= value) or not value <= high:  # type: ignore[operator]
        raise ValueError(f"{name} must be a number in {'(' if open_low else '['}{low:g}, {high:g}], got {value!r}")
    return float(value)  # type: ignore[arg-type]


def ranked_targets(model: nn.Module, x: Tensor, labels: Tensor, n_targets: int, what: str,
                   min_classes: int = 2) -> tuple[Tensor, Tensor]:  # fmt: skip
    """The clean logits' class ranking and the correctly classified images, for attacks that try the next classes.

    AutoAttack's targeted attacks take the ``n_targets`` classes ranked below the top one on the clean image and run
    only on the images the model gets right.

    Returns:
        ``(ranking (N, K) most likely first, indices of the correctly classified images)``.

    Raises:
        ValueError: labels outside the model's classes, fewer than ``min_classes`` classes, or ``n_targets`` beyond
            K - 1.
    """
    with torch.no_grad():
        logits = model(x)
    classes = logits.shape[1]
    check_label_range(labels, classes)
    if classes < min_classes or n_targets > classes - 1:
        raise ValueError(
            f"{what} needs at least {min_classes} classes and n_targets in 1..{max(classes - 1, 1)} (the classes "
            f"below the predicted one), got {classes} classes and n_targets={n_targets}"
        )
    ranking = logits.argsort(dim=1, descending=True)
    return ranking, (ranking[:, 0] == labels).nonzero().squeeze(1)


def check_positive_int(value: object, name: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def check_target_labels(
    targeted: bool, target_labels: object, n: int, num_classes: int | None, device: torch.device
) -> Tensor | None:
    if not isinstance(targeted, bool):
        raise ValueError(f"targeted must be True or False, got {targeted!r}")
    if targeted and target_labels is None:
        raise ValueError("targeted=True needs target_labels (N,) int64: the class each image should be pushed to")
    if not targeted and target_labels is not None:
        raise ValueError("target_labels were given but targeted=False; pass targeted=True for a targeted attack")
    if target_labels is None:
        return None
    if not isinstance(target_labels, Tensor):
        raise ValueError(
            f"target_labels must be a torch.Tensor of shape (N,) and dtype int64, got {type(target_labels).__name__}"
        )
    if target_labels.ndim != 1 or target_labels.dtype != torch.int64 or target_labels.shape[0] != n:
        raise ValueError(
            f"target_labels must have shape ({n},) and dtype torch.int64, "
            f"got shape {tuple(target_labels.shape)} and {target_labels.dtype}"
        )
    if num_classes is not None:
        check_label_range(target_labels, num_classes, "target_labels")
    return target_labels.to(device)


def warn_if_randomised(model: nn.Module, images: Tensor, what: str) -> None:
    """Two forwards on the same two images must agree; otherwise the model (or its input) is randomised.

    Skipped in train mode: that is warned about already, and the extra forwards would move batch-norm statistics.
    """
    if model.training or images.shape[0] == 0:
        return
    sample = images[:2].detach()
    with torch.no_grad():
        first, second = model(sample), model(sample)
    if isinstance(first, Tensor) and isinstance(second, Tensor) and first.shape == second.shape:
        if not torch.allclose(first.float(), second.float(), rtol=1e-4, atol=1e-5):
            gap = float((first.float() - second.float()).abs().max())
            warnings.warn(
                f"{what}: two forward passes on the same input differ (max logit difference {gap:.3g}), so the "
                "model is randomised (input transformations, stochastic layers, dropout). Gradient attacks then "
                "overestimate robustness: evaluate with Expectation over Transformation or a deterministic model",
                stacklevel=3,
            )


def warn_if_probabilities(logits: Tensor, what: str) -> None:
    """Rows that are non-negative and sum to one look like softmax output, not logits."""
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] < 2:
        return
    values = logits.detach().float()
    if bool((values >= 0).all()) and bool(((values.sum(dim=1) - 1).abs() <= 1e-4).all()):
        warnings.warn(
            f"{what}: the model's outputs are non-negative and every row sums to 1, so they look like "
            "probabilities. Attacks need logits: remove the final softmax (cross-entropy on probabilities "
            "saturates and its gradients vanish)",
            stacklevel=3,
        )


def warn_if_zero_gradients(grad: Tensor, what: str) -> None:
    """Images whose whole input gradient is zero cannot be attacked by gradient steps (AutoAttack's check)."""
    if grad.shape[0] == 0:
        return
    zero = int((grad.detach().flatten(1).abs().amax(dim=1) == 0).sum())
    if zero:
        warnings.warn(
            f"{what}: {zero} of {grad.shape[0]} images have an all-zero input gradient at the first step, so "
            "gradient steps cannot move them. Causes: gradient masking or obfuscation, a non-differentiable "
            "layer, or a saturated softmax (very confident logits). Their robustness is likely overestimated; "
            "try loss='dlr' or the gradient-free attack 'square'",
            stacklevel=3,
        )


def warn_once_per_call(model: nn.Module, images: Tensor, what: str) -> None:
    """The checks that need no attack state: train mode and a randomised forward."""
    warn_if_training(model, what)
    warn_if_randomised(model, images, what)


@contextmanager
def gradients_enabled() -> Any:
    """Attacks need autograd even when called under ``torch.no_grad()`` or ``torch.inference_mode()``."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def check_first_logits(logits: Tensor, labels: Tensor, target: Tensor | None, num_classes: int | None,
                       what: str) -> None:  # fmt: skip
    """The checks that need the first logits: label ranges (when the model does not expose K) and probabilities."""
    if num_classes is None:
        check_label_range(labels, logits.shape[1])
        if target is not None:
            check_label_range(target, logits.shape[1], "target_labels")
    warn_if_probabilities(logits, what)


def fooled(logits: Tensor, labels: Tensor, target: Tensor | None) -> Tensor:
    """Per image: misclassified (untargeted) or classified as its target (targeted)."""
    pred = logits.detach().argmax(dim=1)
    return pred != labels if target is None else pred == target


def attack_inputs(
    model: nn.Module, images: Tensor, labels: Tensor, target: Tensor | None, what: str
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Autograd-usable copies of the inputs (inference-mode tensors are cloned), after the once-per-call warnings.

    Call inside :func:`gradients_enabled`.
    """
    x, labels = as_normal_tensor(images), as_normal_tensor(labels)
    warn_once_per_call(model, x, what)
    return x, labels, None if target is None else as_normal_tensor(target)


def as_normal_tensor(images: Tensor) -> Tensor:
    """A detached tensor usable in autograd (a clone if ``images`` is an inference-mode tensor)."""
    return images.clone() if images.is_inference() else images.detach()


def subset_generators(generator: Generators, index: Tensor) -> Generators:
    """The generators of the samples at ``index`` (a per-sample list is indexed, a single generator passes)."""
    if isinstance(generator, Sequence) and not isinstance(generator, torch.Generator):
        return [generator[int(i)] for i in index.tolist()]
    return generator


def check_generators(generator: object, n: int) -> Generators:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, Sequence) and all(isinstance(g, torch.Generator) for g in generator):
        if len(generator) != n:
            raise ValueError(f"got {len(generator)} generators for a batch of {n} images (pass one per image)")
        return generator
    raise ValueError(
        "generator must be a torch.Generator, a list of one generator per image, or None; "
        f"got {type(generator).__name__}"
    )
