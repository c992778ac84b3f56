"""AugMix (Hendrycks et al., 2020) as one batched torch function, drawing every random choice from a generator.

A faithful port of the reference ``augment_and_mix`` (github.com/google-research/augmix, ``augmentations.py``):
``width`` chains of 1..3 operations (``depth=-1``) drawn from the nine AugMix operations (autocontrast,
equalize, posterize, rotate, solarize, shear x/y, translate x/y; the ones that overlap the ImageNet-C corruptions
are excluded as in the paper), mixed with Dirichlet(1) weights and blended with the original by a Beta(1, 1)
factor. Differences from the PIL reference, all small: geometric operations resample bilinearly with
``grid_sample`` and fill with black; pixel operations act on the image rounded to 8 bits. Every operation runs
on the whole batch and each sample picks its own operation, so there is no per-image Python loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab._checks import check_images

Op = Callable[[Tensor, Tensor, Tensor], Tensor]
"""``op(images, level, sign) -> images``; ``level`` in (0, severity] per sample (the reference's 0..10 scale)."""


def _int_parameter(level: Tensor, maxval: float) -> Tensor:
    return torch.floor(level * maxval / 10)


def _affine(images: Tensor, theta: Tensor) -> Tensor:
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _eye(n: int, images: Tensor) -> Tensor:
    return torch.eye(2, 3, dtype=images.dtype, device=images.device).repeat(n, 1, 1)


def _autocontrast(images: Tensor, level: Tensor, sign: Tensor) -> Tensor:
    # PIL's ImageOps.autocontrast on 8-bit values: stretch each channel's [min, max] to [0, 255], truncating
    pixels = (images * 255).round()
    lo = pixels.amin(dim=(2, 3), keepdim=True)
    hi = pixels.amax(dim=(2, 3), keepdim=True)
    stretched = torch.floor((pixels - lo) * 255 / torch.where(hi > lo, hi - lo, torch.ones_like(hi)))
    return torch.where(hi > lo, stretched, pixels) / 255


def _equalize(images: Tensor, level: Tensor, sign: Tensor) -> Tensor:
    # PIL's ImageOps.equalize per channel: lut[i] = (cum_before(i) + step // 2) // step, step from all but the
    # last non-empty bin; identity when step == 0
    n, c, h, w = images.shape
    values = (images * 255).round().long().reshape(n * c, h * w)
    hist = torch.zeros(n * c, 256, dtype=torch.long, device=images.device)
    hist.scatter_add_(1, values, torch.ones_like(values))
    last = hist.gather(1, values.amax(dim=1, keepdim=True))
    step = (h * w - last) // 255
    cum = hist.cumsum(dim=1) - hist
    lut = torch.clamp((cum + step // 2) // step.clamp(min=1), max=255)
    lut = torch.where(step > 0, lut, torch.arange(256, device=images.device).expand_as(lut))
    return (lut.gather(1, values).to(images.dtype) / 255).reshape(n, c, h, w)


def _posterize(images: Tensor, level: Tensor, sign: Tensor) -> Tensor:
    bits = 4 - _int_parameter(level, 4)
    step = torch.pow(2.0, 8 - bits).to(images.dtype)[:, None, None, None]
    return torch.floor((images * 255).round() / step) * step / 255


def _solarize(images: Tensor, level: Tensor, sign: Tensor) -> Tensor:
    threshold = (256 - _int_parameter(level, 256))[:, None, None, None].to(images.dtype)
    pixels = (images * 255).round()
    return torch.where(pixels >= threshold, 255 - pixels, pixels) / 255


def _rotate(images: Tensor, level: Tensor, sign: Tensor) -> Tensor:
    angle = _int_parameter(level, 30) * sign * math.pi / 180
    theta = _eye(len(images), images)
    cos, sin = torch.cos(angle).to(images.dtype), torch.sin(angle).to(images.dtype)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    return _affine(images, theta)


def _shear(axis: int) -> Op:
    def shear(images: Tensor, level: Tensor, sign: Tensor) -> Tensor:
        theta = _eye(len(images), images)
        theta[:, axis, 1 - axis] = (level * 0.3 / 10 * sign).to(images.dtype)
        return _affine(images, theta)

    shear.__name__ = f"shear_{'xy'[axis]}"
    return shear


def _translate(axis: int) -> Op:
    def translate(images: Tensor, level: Tensor, sign: Tensor) -> Tensor:
        size = images.shape[-1 - axis]
        pixels = _int_parameter(level, size / 3) * sign
        theta = _eye(len(images), images)
        theta[:, axis, 2] = (2 * pixels / size).to(images.dtype)  # normalised coordinates span 2
        return _affine(images, theta)

    translate.__name__ = f"translate_{'xy'[axis]}"
    return translate


AUGMIX_OPS: dict[str, Op] = {
    "autocontrast": _autocontrast,
    "equalize": _equalize,
    "posterize": _posterize,
    "rotate": _rotate,
    "solarize": _solarize,
    "shear_x": _shear(0),
    "shear_y": _shear(1),
    "translate_x": _translate(0),
    "translate_y": _translate(1),
}
"""The reference ``augmentations.augmentations`` list (no contrast/colour/brightness/sharpness)."""


def _apply_random_op(images: Tensor, severity: int, generator: torch.Generator | None) -> Tensor:
    n = len(images)
    choice = torch.randint(len(AUGMIX_OPS), (n,), generator=generator).to(images.device)
    level = (torch.rand(n, generator=generator, dtype=torch.float64) * (severity - 0.1) + 0.1).to(images.device)
    sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0).to(images.device, torch.float64)
    out = images
    for i, op in enumerate(AUGMIX_OPS.values()):
        picked = choice == i
        if bool(picked.any()):
            out = torch.where(picked[:, None, None, None], op(images, level, sign), out)
    return out


def augmix(
    images: Tensor,
    *,
    severity: int = 3,
    width: int = 3,
    depth: int = -1,
    alpha: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One AugMix view of each image.

    Args:
        images: pixels in [0, 1].
        severity: operation strength, 1..10 (reference default 3).
        width: number of augmentation chains mixed.
        depth: operations per chain; -1 draws 1..3 per chain and sample, as the reference.
        alpha: Dirichlet and Beta concentration (reference 1).
        generator: source of every random draw (CPU); the same state gives the same views on any device.

    Returns:
        Augmented pixels in [0, 1], same shape, device and dtype.

    Shape:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``.

    Raises:
        ValueError: images outside the contract, or a non-positive ``severity``, ``width`` or ``alpha``.
    """
    check_images(images)
    if not 1 <= severity <= 10 or width < 1 or alpha <= 0 or depth == 0 or depth < -1:
        raise ValueError(
            f"augmix needs 1 <= severity <= 10, width >= 1, alpha > 0 and depth -1 or >= 1; got severity={severity}, "
            f"width={width}, alpha={alpha}, depth={depth}"
        )
    n = len(images)
    # Dirichlet and Beta through Gamma draws, because torch.distributions takes no generator
    gamma = torch._standard_gamma
    weights = gamma(torch.full((n, width), float(alpha), dtype=torch.float64), generator=generator)
    weights = weights / weights.sum(dim=1, keepdim=True)
    a, b = gamma(torch.full((2, n), float(alpha), dtype=torch.float64), generator=generator)
    mix = a / (a + b)
    weights = weights.to(images.device, images.dtype)
    mix = mix.to(images.device, images.dtype)[:, None, None, None]
    mixed = torch.zeros_like(images)
    for chain in range(width):
        ops = torch.randint(1, 4, (n,), generator=generator) if depth == -1 else torch.full((n,), depth)
        augmented = images
        for d in range(int(ops.max())):
            stepped = _apply_random_op(augmented, severity, generator)
            active = (ops > d).to(images.device)[:, None, None, None]
            augmented = torch.where(active, stepped, augmented)
        mixed = mixed + weights[:, chain, None, None, None] * augmented
    return ((1 - mix) * images + mix * mixed).clamp(0, 1)
