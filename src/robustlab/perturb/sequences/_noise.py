"""Noise sequences: the clean image, then independent noisy copies of fixed strength (Gaussian, shot, speckle).

Every noisy frame is compared with the first (clean) one for the flip probability.
"""

from __future__ import annotations

import torch
from torch import Tensor

from robustlab import rng
from robustlab.perturb._registry import PERTURBATIONS
from robustlab.perturb.sequences._recipes import _setup
from robustlab.rng import Generators

__all__ = ["gaussian_noise_sequence", "shot_noise_sequence", "speckle_noise_sequence"]


@PERTURBATIONS.register
def gaussian_noise_sequence(
    images: Tensor, *, generator: Generators = None, profile: str | None = None, frames: int | None = None
) -> Tensor:
    """The clean image, then independent Gaussian-noise copies of fixed σ (ImageNet-P ``gaussian_noise``).

    σ = .03 (ImageNet-P), .02 (CIFAR-P), .025 (Tiny-ImageNet-P); every noisy frame is compared with the first
    (clean) one for the flip probability (:data:`NOISE_SEQUENCES`).

    Args:
        images: clean pixels.
        generator: one generator, or one per sample (its frames' noise comes from it alone).
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"``; default chosen from the image size.
        frames: frames per sequence including the clean one (default 31).

    Returns:
        The sequences, values in [0, 1], same dtype and device.

    Shape:
        ``(N, C, H, W)`` -> ``(N, T, C, H, W)``.

    Raises:
        ValueError: bad images, profile or frame count.
    """
    recipe, count, _ = _setup("gaussian_noise", images, profile, frames)
    n = images.shape[0]
    noise = rng.randn((n, count - 1, *images.shape[1:]), generator=generator, device=images.device, dtype=images.dtype)
    noisy = (images.unsqueeze(1) + recipe["sigma"] * noise).clamp_(0.0, 1.0)
    return torch.cat([images.unsqueeze(1), noisy], dim=1)


@PERTURBATIONS.register
def shot_noise_sequence(
    images: Tensor, *, generator: Generators = None, profile: str | None = None, frames: int | None = None
) -> Tensor:
    """The clean image, then independent Poisson-noise copies ``Poisson(λ x) / λ`` (ImageNet-P ``shot_noise``).

    λ = 300 (ImageNet-P), 700 (CIFAR-P), 500 (Tiny-ImageNet-P). See :func:`gaussian_noise_sequence` for the
    arguments, shapes and errors.
    """
    recipe, count, _ = _setup("shot_noise", images, profile, frames)
    rate = float(recipe["rate"])
    rates = (images.unsqueeze(1) * rate).expand(-1, count - 1, -1, -1, -1)
    noisy = (rng.poisson(rates, generator=generator) / rate).clamp_(0.0, 1.0)
    return torch.cat([images.unsqueeze(1), noisy], dim=1)


@PERTURBATIONS.register
def speckle_noise_sequence(
    images: Tensor, *, generator: Generators = None, profile: str | None = None, frames: int | None = None
) -> Tensor:
    """The clean image, then independent speckle copies ``x + x · N(0, .05²)`` (validation ``speckle_noise``).

    σ = .05 at every profile. See :func:`gaussian_noise_sequence` for the arguments, shapes and errors.
    """
    recipe, count, _ = _setup("speckle_noise", images, profile, frames)
    n = images.shape[0]
    noise = rng.randn((n, count - 1, *images.shape[1:]), generator=generator, device=images.device, dtype=images.dtype)
    clean = images.unsqueeze(1)
    noisy = (clean + clean * (recipe["sigma"] * noise)).clamp_(0.0, 1.0)
    return torch.cat([clean, noisy], dim=1)
