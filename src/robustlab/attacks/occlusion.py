"""Accuracy under patch-based corruption (AFAT, Table 3 "random selected patch").

A fraction ρ of the non-overlapping patches of each image is replaced by uniform noise
(:func:`robustlab.perturb.patch_occlusion`, eq. 1) and the model's accuracy on the result is measured.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab._checks import warn_if_training
from robustlab.attacks import _common as c
from robustlab.perturb.occlusion import patch_occlusion
from robustlab.rng import Generators

__all__ = ["patch_corruption_accuracy"]


def patch_corruption_accuracy(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    rho: float | None = None,
    patch_size: int,
    generator: Generators = None,
    mask: Tensor | None = None,
    noise: str = "uniform",
    batch_size: int | None = None,
) -> float:
    """Accuracy after occluding random (or given) patches with noise, as AFAT evaluates ViTs.

    Args:
        model: maps [0, 1] pixels to logits. Its mode is not changed.
        images: clean pixels in [0, 1].
        labels: true classes.
        rho: fraction of patches to occlude per image (AFAT: 0.1); ignored when ``mask`` is given.
        patch_size: side of the square patches in pixels (the ViT's patch size: 16 at 224 px, 4 for
            ``cifar:vit_tiny_patch4``); must divide H and W.
        generator: picks the patches and the noise; one generator, or one per image so that an image's
            corruption does not depend on its batch.
        mask: patches to occlude ``(N, H/p, W/p)`` (True = occluded), e.g. those chosen by a corruption model.
        noise: ``"uniform"`` (U[0, 1], as AFAT) or ``"zeros"``.
        batch_size: evaluate in chunks of this many images (default: all at once).

    Returns:
        The fraction of images classified correctly after occlusion (NaN for an empty batch).

    Shape:
        images ``(N, C, H, W)``, labels ``(N,)``, mask ``(N, H/p, W/p)``.

    Raises:
        ValueError: bad images or labels, neither ``rho`` nor ``mask``, ``rho`` outside [0, 1], a patch size
            that does not divide the image, a bad mask or noise name, a generator list of the wrong length.
    """
    model = c.check_model(model, "patch_corruption_accuracy")
    images, labels = c.check_inputs(model, images, labels, "patch_corruption_accuracy")
    n = images.shape[0]
    generator = c.check_generators(generator, n)
    if batch_size is None:
        batch_size = max(n, 1)
    batch_size = c.check_positive_int(batch_size, "batch_size")
    if mask is None and rho is None:
        raise ValueError("pass rho (the fraction of patches to occlude) or an explicit mask")
    if mask is not None and (not isinstance(mask, Tensor) or mask.ndim != 3 or mask.shape[0] != n):
        got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"mask must have shape (N, H/patch_size, W/patch_size) with N = {n}, got {got}")
    if n == 0:
        return float("nan")
    warn_if_training(model, "patch_corruption_accuracy")
    correct = 0
    with torch.no_grad():
        for start in range(0, n, batch_size):
            index = torch.arange(start, min(start + batch_size, n))
            occluded, _ = patch_occlusion(
                images[start : start + batch_size],
                rho,
                patch_size=patch_size,
                mask=None if mask is None else mask[start : start + batch_size],
                generator=c.subset_generators(generator, index),
                noise=noise,
            )
            logits = model(occluded)
            correct += int((logits.argmax(dim=1) == labels[start : start + batch_size]).sum())
    return correct / n
