"""Snow: a thresholded, zoomed and motion-blurred noise layer of flakes over a paled image.

Source of the recipes: hendrycks/robustness, ``ImageNet-C/create_c/make_imagenet_c.py`` (224 px),
``make_cifar_c.py`` (32 px) and ``make_tinyimagenet_c.py`` (64 px). Where ``imagecorruptions`` 1.1.2 departs from
them, the original is followed and the difference is noted in the function's docstring.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from robustlab import rng
from robustlab.perturb._common import setup_corruption, work_dtype
from robustlab.perturb._cv import gray
from robustlab.perturb._filters import clipped_zoom, motion_blur2d
from robustlab.perturb._registry import PERTURBATIONS
from robustlab.rng import Generators

__all__ = ["apply_snow", "snow"]


def apply_snow(
    images: Tensor,
    layer: Tensor,
    *,
    zoom: float,
    threshold: float,
    radius: float,
    sigma: float,
    angles: Tensor | Sequence[float],
    blend: float,
) -> Tensor:
    """Snow from a raw noise layer: zoom, threshold, motion-blur, then add it (and its 180° turn) to a paled image.

    Steps of the original: the layer is zoomed into (``clipped_zoom``), values under ``threshold`` set to 0,
    clipped to [0, 1] and stored as uint8 (truncation), motion-blurred (ImageMagick ``MotionBlurImage``: radius,
    sigma, one angle per image) and stored as uint8 again (rounding). The image becomes
    ``blend * x + (1 - blend) * max(x, 1.5 * gray(x) + 0.5)``, and ``clip(x + snow + rot180(snow), 0, 1)``.

    Args:
        images: clean pixels.
        layer: raw snow noise, e.g. ``N(mean, std)`` per pixel (first two severity parameters).
        zoom: zoom factor (third parameter).
        threshold: flakes below this value vanish (fourth parameter).
        radius: motion-blur radius in pixels (fifth parameter).
        sigma: motion-blur Gaussian fall-off (sixth parameter).
        angles: one blur angle in degrees per image (the benchmark draws U(-135, -45)).
        blend: weight of the original image against its paled version (seventh parameter).

    Returns:
        Snowy pixels, same shape, dtype and device.

    Shape:
        ``(N, 3, H, W)``, layer ``(N, H, W)``, angles ``(N,)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: a layer of the wrong shape, ``zoom < 1`` or the wrong number of angles.
    """
    n, _, h, w = images.shape
    if tuple(layer.shape) != (n, h, w):
        raise ValueError(f"snow layer must have shape {(n, h, w)}, got {tuple(layer.shape)}")
    if not zoom >= 1:
        raise ValueError(f"snow zoom must be >= 1 (it zooms into the layer), got {zoom}")
    dtype = work_dtype(images)
    x = images.to(dtype)
    flakes = clipped_zoom(layer.to(device=x.device, dtype=dtype).unsqueeze(1), zoom)
    flakes = torch.where(flakes < threshold, torch.zeros_like(flakes), flakes).clamp_(0.0, 1.0)
    flakes = torch.floor(flakes * 255) / 255  # uint8 PNG handed to ImageMagick
    flakes = motion_blur2d(flakes, radius, sigma, angles)
    flakes = torch.round(flakes * 255) / 255  # 8-bit PNG read back
    pale = torch.maximum(x, gray(x).mul_(1.5).add_(0.5))
    out = pale.lerp_(x, blend)  # blend * x + (1 - blend) * pale
    out.add_(flakes + flakes.flip(-2, -1))
    return out.clamp_(0.0, 1.0).to(images.dtype)


@PERTURBATIONS.register
def snow(
    images: Tensor,
    severity: int,
    *,
    generator: Generators = None,
    profile: str | None = None,
) -> Tensor:
    """Snow: thresholded, zoomed Gaussian noise streaked by a motion blur, over a paled image.

    Args:
        images: clean pixels.
        severity: 1..5.
        generator: one generator, or one per sample (batch-independent results).
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"`` severity table; default chosen from the image size.

    Returns:
        Snowy pixels in [0, 1], same shape, dtype and device.

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: bad images, severity or profile.

    Note:
        Fidelity: the original blurs the snow layer with ImageMagick's motion blur through Wand;
        ``imagecorruptions`` re-implements that blur in NumPy with the same taps, and so does this batched version
        (:func:`robustlab.perturb._filters.motion_blur2d`). Following the original rather than
        ``imagecorruptions``: the layer is truncated to uint8 before the blur (the original saves it as an 8-bit
        PNG), and the zoomed layer is trimmed around its centre (``imagecorruptions`` keeps the top-left corner).
        Each sample draws its noise layer, then its angle ~ U(-135°, -45°), from its own generator; the noise is
        float32 rather than float64.
    """
    (mean, std, zoom, threshold, radius, sigma, blend), _ = setup_corruption("snow", images, severity, profile)
    n, _, h, w = images.shape
    dtype = work_dtype(images)
    # each sample draws its noise layer, then its angle, from its own generator
    layer = mean + std * rng.randn((n, h, w), generator=generator, device=images.device, dtype=dtype)
    angles = rng.uniform((n,), -135.0, -45.0, generator=generator)
    return apply_snow(
        images, layer, zoom=zoom, threshold=threshold, radius=radius, sigma=sigma, angles=angles, blend=blend
    )
