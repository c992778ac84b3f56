"""Spatter: water drops (distance-shaded, through OpenCV's Canny and distance transform) or mud splashes.

Source of the recipes: hendrycks/robustness, ``ImageNet-C/create_c/make_imagenet_c.py`` (224 px),
``make_cifar_c.py`` (32 px) and ``make_tinyimagenet_c.py`` (64 px). Where ``imagecorruptions`` 1.1.2 departs from
them, the original is followed and the difference is noted in the function's docstring.
"""

from __future__ import annotations

import torch
from torch import Tensor

from robustlab import rng
from robustlab.perturb._common import setup_corruption, work_dtype
from robustlab.perturb._cv import DIST_SHIFT, box3_sum, canny, chamfer_distance, equalize_hist, pad1
from robustlab.perturb._filters import gaussian_blur2d
from robustlab.perturb._registry import PERTURBATIONS
from robustlab.rng import Generators

__all__ = ["apply_spatter", "spatter"]


# the emboss-like kernel of the water branch (cv2.filter2D correlates, no flip)
_WATER_KERNEL = ((-2, -1, 0), (-1, 1, 1), (0, 1, 2))
# water is pale turquoise, mud brown; the original adds these in the image's own (RGB) channel order
_WATER_COLOR = (175 / 255, 238 / 255, 238 / 255)
_MUD_COLOR = (63 / 255, 42 / 255, 20 / 255)


def _water_mask(liquid_u8: Tensor) -> Tensor:
    """The water branch's distance-shaded mask ``liquid * dist`` (float32, un-normalised) from the uint8 layer.

    ``dist = blur3(filter2D(equalizeHist(uint8(blur3(min(distanceTransform(255 - Canny(liquid, 50, 150)), 20))))))``
    with OpenCV's rounding at every uint8 step.
    """
    edges = canny(liquid_u8, 50, 150)
    dist = chamfer_distance(edges)
    # cv2.blur on float32 (sums in float64, times 1/9) then astype(uint8), i.e. float32(S * 2^-16 / 9) truncated;
    # for the integer Q16 sums S here that is exactly S // (9 * 2^16) (checked over the whole range)
    dist8 = torch.div(box3_sum(dist), 9 << DIST_SHIFT, rounding_mode="floor")
    dist8 = equalize_hist(dist8.to(torch.int64)).to(torch.int16)
    # cv2.filter2D(CV_8U) with the emboss kernel (a correlation), saturated to 0..255
    p = pad1(dist8, "mirror")
    h, w = dist8.shape[-2:]
    emboss = torch.zeros_like(dist8)
    for i, row in enumerate(_WATER_KERNEL):
        for j, weight in enumerate(row):
            if weight:
                emboss.add_(p[..., i : i + h, j : j + w], alpha=weight)
    emboss.clamp_(0, 255)
    # the uint8 box blur rounds: round(S / 9) = (S + 4) // 9 for integers (never a tie)
    dist8 = torch.div(box3_sum(emboss).add_(4), 9, rounding_mode="floor")
    return liquid_u8.to(torch.float32).mul_(dist8)


def apply_spatter(
    images: Tensor,
    layer: Tensor,
    *,
    sigma: float,
    threshold: float,
    intensity: float,
    mud: bool,
) -> Tensor:
    """Spatter from a raw liquid layer: blur and threshold it, then add water drops or cover with mud.

    The layer is Gaussian-blurred (``sigma``, scikit-image defaults) and values under ``threshold`` set to 0.
    Water (``mud=False``): the layer as uint8 is shaded by a distance-to-edge map (Canny edges, 5 × 5 chamfer
    distance capped at 20, box blur, histogram equalisation, an emboss kernel, box blur), normalised to a maximum
    of ``intensity`` and added in pale turquoise. Mud: the drop mask (layer above ``threshold``) is blurred with
    σ = ``intensity``, kept where >= 0.8, and the image there is mixed towards brown.

    Args:
        images: clean pixels.
        layer: raw liquid noise, e.g. ``N(mean, std)`` per pixel (first two severity parameters).
        sigma: blur of the liquid layer (third parameter).
        threshold: drop threshold (fourth parameter).
        intensity: water strength or mud blur σ (fifth parameter).
        mud: mud instead of water (sixth parameter = 1).

    Returns:
        Spattered pixels, same shape, dtype and device.

    Shape:
        ``(N, 3, H, W)``, layer ``(N, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: a layer of the wrong shape.
    """
    n, _, h, w = images.shape
    if tuple(layer.shape) != (n, h, w):
        raise ValueError(f"spatter layer must have shape {(n, h, w)}, got {tuple(layer.shape)}")
    dtype = work_dtype(images)
    x = images.to(dtype)
    # The thresholds below must not flip with the batch size: CPU convolutions are batch-invariant in float32;
    # elsewhere (cuDNN may pick TF32 or batch-dependent algorithms) the blur runs in float64, as the original's.
    blur_dtype = torch.float32 if x.device.type == "cpu" else torch.float64
    liquid = gaussian_blur2d(layer.to(device=x.device, dtype=blur_dtype), sigma)
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    if not mud:
        liquid_u8 = liquid.mul_(255).clamp_(0, 255).to(torch.int16)  # astype(uint8) truncates
        m = _water_mask(liquid_u8)
        peak = m.amax(dim=(1, 2), keepdim=True)
        # a layer without any drop gives 0/0 in the original; here it leaves the image unchanged
        m = m.mul_(torch.where(peak > 0, intensity / peak.clamp(min=1e-12), torch.zeros_like(peak)))
        color = torch.tensor(_WATER_COLOR, dtype=dtype, device=x.device).view(1, 3, 1, 1)
        out = torch.addcmul(x, m.unsqueeze(1).to(dtype), color)
    else:
        drops = (liquid > threshold).to(blur_dtype)
        m = gaussian_blur2d(drops, intensity)
        m = torch.where(m < 0.8, torch.zeros_like(m), m).unsqueeze(1).to(dtype)
        color = torch.tensor(_MUD_COLOR, dtype=dtype, device=x.device).view(1, 3, 1, 1)
        out = torch.addcmul(x, m, color - x)  # x * (1 - m) + color * m
    return out.clamp_(0.0, 1.0).to(images.dtype)


@PERTURBATIONS.register
def spatter(
    images: Tensor,
    severity: int,
    *,
    generator: Generators = None,
    profile: str | None = None,
) -> Tensor:
    """Spatter: water drops (severities 1-3) or mud splashes (4-5) from a thresholded, blurred noise layer.

    Args:
        images: clean pixels.
        severity: 1..5.
        generator: one generator, or one per sample (batch-independent results).
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"`` severity table; default chosen from the image size.

    Returns:
        Spattered pixels in [0, 1], same shape, dtype and device.

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: bad images, severity or profile.

    Note:
        Fidelity: the water branch's OpenCV steps (Canny, 5 × 5 chamfer distance transform, truncation, box
        blurs, ``equalizeHist``, ``filter2D`` with uint8 saturation) are re-implemented batched in integer
        arithmetic and give OpenCV's exact output for the same uint8 liquid layer (OpenCV's x86 wheels route
        the distance transform through Intel IPP, a float32 variant that changes about one pixel in a million
        of the mask, by < 0.4 % of its range). The liquid noise is float32 and blurred in float32 on CPU, float64
        on other devices (the original: float64). A layer with no drop at all, where the original divides 0 by
        0, leaves the image unchanged. The colours are added in RGB order exactly as the original does (its
        "BGR" colour tuples land on the RGB image unchanged).
    """
    (mean, std, sigma, threshold, intensity, mode), _ = setup_corruption("spatter", images, severity, profile)
    n, _, h, w = images.shape
    layer = mean + std * rng.randn((n, h, w), generator=generator, device=images.device, dtype=torch.float32)
    return apply_spatter(images, layer, sigma=sigma, threshold=threshold, intensity=intensity, mud=bool(mode))
