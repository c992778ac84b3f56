"""Colour corruptions: brightness, contrast and saturate, with the scikit-image HSV conversions they use.

:func:`rgb_to_hsv` and :func:`hsv_to_rgb` are batched twins of scikit-image's ``rgb2hsv`` / ``hsv2rgb``, which the
original benchmark uses for brightness and saturate.

Fidelity: every recipe follows hendrycks/robustness ``make_imagenet_c.py`` / ``make_cifar_c.py`` /
``make_tinyimagenet_c.py``; where the ``imagecorruptions`` package departs from it, the function's docstring says so.
"""

from __future__ import annotations

import torch
from torch import Tensor

from robustlab.perturb._common import per_sample, setup_corruption, work_dtype
from robustlab.perturb._registry import PERTURBATIONS
from robustlab.rng import Generators

__all__ = [
    "apply_brightness",
    "apply_contrast",
    "apply_saturate",
    "brightness",
    "contrast",
    "hsv_to_rgb",
    "rgb_to_hsv",
    "saturate",
]

# hsv_to_rgb: for hue sector i = floor(6h) mod 6, channel c takes candidate _SECTOR_PICK[c][i] of (v, q, p, t)
_SECTOR_PICK = ((0, 1, 2, 2, 3, 0), (3, 0, 0, 1, 2, 2), (2, 2, 3, 0, 0, 1))


# --------------------------------------------------------------------------------------------------- colour space


def rgb_to_hsv(images: Tensor) -> Tensor:
    """RGB to HSV exactly as scikit-image's ``rgb2hsv``, batched.

    Hue is in [0, 1); where several channels share the maximum, blue wins over green over red (skimage's order of
    assignment); grey pixels (max == min) get hue 0 and saturation 0.

    Args:
        images: RGB pixels in [0, 1].

    Returns:
        ``(h, s, v)`` stacked on the channel axis, same dtype and device.

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.
    """
    r, g, b = images.unbind(1)
    v = images.amax(1)
    delta = v - images.amin(1)
    grey = delta == 0
    safe = torch.where(grey, torch.ones_like(delta), delta)
    hue = torch.where(b == v, 4.0 + (r - g) / safe, torch.where(g == v, 2.0 + (b - r) / safe, (g - b) / safe))
    hue = torch.remainder(hue / 6.0, 1.0).masked_fill(grey, 0.0)
    sat = torch.where(grey, torch.zeros_like(delta), delta / torch.where(v == 0, torch.ones_like(v), v))
    return torch.stack((hue, sat, v), 1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """HSV to RGB exactly as scikit-image's ``hsv2rgb``, batched (inverse of :func:`rgb_to_hsv`).

    Args:
        hsv: ``(h, s, v)`` on the channel axis, h in [0, 1], s and v in [0, 1].

    Returns:
        RGB pixels, same dtype and device.

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.
    """
    h, s, v = hsv.unbind(1)
    sector = torch.floor(h * 6.0)
    f = h * 6.0 - sector
    p = v * (1.0 - s)
    q = v * (1.0 - f * s)
    t = v * (1.0 - (1.0 - f) * s)
    candidates = torch.stack((v, q, p, t), 1)
    pick = torch.tensor(_SECTOR_PICK, device=hsv.device)  # (3, 6)
    index = pick[:, torch.remainder(sector.long(), 6)].movedim(0, 1)  # (N, 3, H, W)
    return torch.gather(candidates, 1, index)


# ------------------------------------------------------------------------------------------- brightness, saturate


def apply_brightness(images: Tensor, delta: float | Tensor) -> Tensor:
    """Add ``delta`` to the HSV value channel (clipped to [0, 1]) and convert back to RGB.

    Computed in closed form: hue and saturation are unchanged, and every RGB channel is proportional to V at fixed
    hue and saturation, so the scikit-image round trip ``hsv2rgb(rgb2hsv(x) + (0, 0, delta))`` equals
    ``x · V' / V`` (and ``V'`` on black pixels, whose hue and saturation are 0). This matches the round trip through
    :func:`rgb_to_hsv` / :func:`hsv_to_rgb` to float rounding at a fraction of the cost.

    Args:
        images: clean pixels (not validated here; the registered corruption validates).
        delta: value shift, one number or one per sample.

    Returns:
        Brightened pixels in [0, 1], same shape, dtype and device.

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``; ``delta`` scalar or ``(N,)``.

    Raises:
        ValueError: a per-sample ``delta`` of the wrong length.
    """
    dtype = work_dtype(images)
    d = per_sample(delta, images, dtype)
    x = images.to(dtype)
    value = x.amax(1, keepdim=True)
    new_value = (value + d).clamp_(0.0, 1.0)
    black = value == 0
    out = x * (new_value / value.masked_fill(black, 1.0))
    out.add_(new_value * black)
    return out.clamp_(0.0, 1.0).to(images.dtype)


def apply_saturate(images: Tensor, scale: float | Tensor, offset: float | Tensor = 0.0) -> Tensor:
    """Set the HSV saturation to ``clip(s · scale + offset, 0, 1)`` and convert back to RGB.

    Computed in closed form: at fixed hue and value every RGB channel is ``V · (1 - S · w_c)`` with a hue-dependent
    ``w_c``, so the new pixel is ``V - (V - x) · S' / S``. Grey pixels (``S = 0``) have hue 0 in scikit-image, so
    they become ``(V, V · (1 - S'), V · (1 - S'))``: a positive ``offset`` tints them red. The original benchmark
    (saturate severities 4 and 5) has that quirk and so does this function. Matches the round trip through
    :func:`rgb_to_hsv` / :func:`hsv_to_rgb` to float rounding.

    Args:
        images: clean pixels.
        scale: saturation multiplier, one number or one per sample.
        offset: saturation offset, one number or one per sample.

    Returns:
        Re-saturated pixels in [0, 1], same shape, dtype and device.

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``; ``scale`` / ``offset`` scalar or ``(N,)``.

    Raises:
        ValueError: a per-sample parameter of the wrong length.
    """
    dtype = work_dtype(images)
    a = per_sample(scale, images, dtype)
    b = per_sample(offset, images, dtype)
    x = images.to(dtype)
    value = x.amax(1, keepdim=True)
    delta = value - x.amin(1, keepdim=True)
    grey = delta == 0
    sat = delta / value.masked_fill(grey, 1.0)  # 0 where grey, as in scikit-image
    new_sat = (sat * a + b).clamp_(0.0, 1.0)
    out = (x - value).mul_(new_sat / sat.masked_fill(grey, 1.0)).add_(value)
    if isinstance(b, Tensor) or b != 0:  # grey pixels: hue 0 -> (V, V(1 - S'), V(1 - S')); S' = 0 without offset
        out[:, 1:].sub_(value * new_sat * grey)
    return out.clamp_(0.0, 1.0).to(images.dtype)


def apply_contrast(images: Tensor, factor: float | Tensor) -> Tensor:
    """Scale each channel's deviation from its own spatial mean: ``(x - mean_c) · factor + mean_c``, clipped.

    The mean is per image **and per channel** (``np.mean(x, axis=(0, 1))`` on HWC in the original), not over all
    channels together.

    Args:
        images: clean pixels.
        factor: contrast factor (< 1 lowers contrast), one number or one per sample.

    Returns:
        Pixels in [0, 1], same shape, dtype and device.

    Shape:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``; ``factor`` scalar or ``(N,)``.

    Raises:
        ValueError: a per-sample ``factor`` of the wrong length.
    """
    dtype = work_dtype(images)
    c = per_sample(factor, images, dtype)
    x = images.to(dtype)
    means = x.mean((2, 3), keepdim=True)
    return (x - means).mul_(c).add_(means).clamp_(0.0, 1.0).to(images.dtype)


@PERTURBATIONS.register
def brightness(images: Tensor, severity: int, *, generator: Generators = None, profile: str | None = None) -> Tensor:
    """ImageNet-C brightness: add the severity's shift to the HSV value channel.

    Args:
        images: clean pixels.
        severity: 1..5.
        generator: unused (deterministic corruption); accepted for a uniform signature.
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"``; default chosen from the image size.

    Returns:
        Corrupted pixels, same shape, dtype and device, in [0, 1].

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: images not ``(N, 3, H, W)`` float in [0, 1], severity outside 1..5, unknown profile.

    Note:
        Same recipe as the original and ``imagecorruptions`` (scikit-image HSV round trip, reproduced by
        :func:`rgb_to_hsv` / :func:`hsv_to_rgb`), in float32 instead of float64.
    """
    delta, _ = setup_corruption("brightness", images, severity, profile)
    return apply_brightness(images, delta)


@PERTURBATIONS.register
def contrast(images: Tensor, severity: int, *, generator: Generators = None, profile: str | None = None) -> Tensor:
    """ImageNet-C contrast: shrink each channel towards its spatial mean by the severity's factor.

    Args:
        images: clean pixels.
        severity: 1..5.
        generator: unused (deterministic corruption); accepted for a uniform signature.
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"``; default chosen from the image size.

    Returns:
        Corrupted pixels, same shape, dtype and device, in [0, 1].

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: images not ``(N, 3, H, W)`` float in [0, 1], severity outside 1..5, unknown profile.

    Note:
        Same recipe as the original and ``imagecorruptions``: the mean is per channel
        (``np.mean(x, axis=(0, 1))`` on an HWC image), not over all channels.
    """
    factor, _ = setup_corruption("contrast", images, severity, profile)
    return apply_contrast(images, factor)


@PERTURBATIONS.register
def saturate(images: Tensor, severity: int, *, generator: Generators = None, profile: str | None = None) -> Tensor:
    """ImageNet-C saturate: ``s <- clip(s · a + b)`` in HSV with the severity's ``(a, b)``.

    Args:
        images: clean pixels.
        severity: 1..5.
        generator: unused (deterministic corruption); accepted for a uniform signature.
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"``; default chosen from the image size.

    Returns:
        Corrupted pixels, same shape, dtype and device, in [0, 1].

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: images not ``(N, 3, H, W)`` float in [0, 1], severity outside 1..5, unknown profile.

    Note:
        Same recipe as the original and ``imagecorruptions``, including scikit-image's red tint of grey pixels
        when the offset is positive (severities 4-5). A validation corruption, not part of mCE.
    """
    (scale, offset), _ = setup_corruption("saturate", images, severity, profile)
    return apply_saturate(images, scale, offset)
