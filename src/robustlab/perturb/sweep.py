"""Additive pixel-space Gaussian noise at a given σ (the Gaussian-noise study, "Unlocking Noise-Resistant Vision")."""

from __future__ import annotations

from torch import Tensor

from robustlab import rng
from robustlab._checks import check_images
from robustlab.rng import Generators


def additive_gaussian_noise(
    images: Tensor,
    sigma: float,
    *,
    generator: Generators = None,
) -> Tensor:
    """Add N(0, σ²) noise to [0, 1] pixels and clip back to [0, 1].

    Noise acts before the model's own normalisation, so σ means the same for every model (REFERENCE.md, noise study).

    Args:
        images: clean pixels.
        sigma: noise standard deviation in pixel units (0 returns a copy of the input).
        generator: one generator, or one per sample so a sample's noise does not depend on its batch.

    Returns:
        Noisy pixels, same shape, dtype and device.

    Shape:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``.

    Raises:
        ValueError: bad images or a negative / non-finite σ.
    """
    check_images(images)
    if not (sigma >= 0 and sigma != float("inf")):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    if sigma == 0:
        return images.clone()
    noise = rng.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    return (images + sigma * noise).clamp_(0.0, 1.0)
