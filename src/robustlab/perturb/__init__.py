"""Perturbations of [0, 1] pixel tensors: the 19 common corruptions, sequences, patch occlusion and noise.

Every corruption is a function ``(images, severity, *, generator=None, profile=None) -> images`` registered in
:data:`PERTURBATIONS` under its name; :func:`perturb` is the front door.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from robustlab._front_door import make_callable

# imported for their @PERTURBATIONS.register side effect
from robustlab.perturb import blur, digital, jpeg, noise, occlusion, sequences, weather  # noqa: F401
from robustlab.perturb._profiles import (
    ALL_CORRUPTIONS,
    PROFILES,
    SEVERITY_TABLES,
    TEST_CORRUPTIONS,
    VALIDATION_CORRUPTIONS,
    resolve_profile,
    severity_params,
)
from robustlab.perturb._registry import PERTURBATIONS
from robustlab.perturb.occlusion import patch_occlusion, random_patch_occlusion
from robustlab.perturb.sequences import NOISE_SEQUENCES, SEQUENCES, TEMPORAL_SEQUENCES
from robustlab.perturb.sweep import additive_gaussian_noise
from robustlab.rng import Generators
from robustlab.runtime import tune_allocator_once

__all__ = [
    "ALL_CORRUPTIONS",
    "NOISE_SEQUENCES",
    "PERTURBATIONS",
    "PROFILES",
    "SEQUENCES",
    "SEVERITY_TABLES",
    "TEMPORAL_SEQUENCES",
    "TEST_CORRUPTIONS",
    "VALIDATION_CORRUPTIONS",
    "additive_gaussian_noise",
    "list_perturbations",
    "patch_occlusion",
    "perturb",
    "perturbation_sequence",
    "random_patch_occlusion",
    "resolve_profile",
    "severity_params",
]


def perturb(
    images: Tensor,
    name: str,
    severity: int,
    *,
    generator: Generators = None,
    profile: str | None = None,
    jpeg_quality: int | None = None,
    **kwargs: Any,
) -> Tensor:
    """Apply the registered perturbation ``name`` at ``severity``.

    Args:
        images: clean pixels.
        name: a registered perturbation, e.g. ``"glass_blur"`` (see :func:`list_perturbations`).
        severity: 1..5 for the benchmark corruptions.
        generator: one generator, or one per sample so each sample's corruption is independent of its batch.
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"`` parameters; default chosen from the image size.
        jpeg_quality: re-encode the result as JPEG of this quality, as the released ImageNet-C files were (85).
        kwargs: extra options of that perturbation.

    Returns:
        Perturbed pixels of the same shape, in [0, 1].

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: unknown name (with close matches), bad images, severity or profile.
    """
    fn = PERTURBATIONS.get(name)
    if name.endswith("_sequence") or name == "patch_occlusion":
        hint = (
            "perturbation_sequence()" if name.endswith("_sequence") else "patch_occlusion() (it returns the mask too)"
        )
        raise ValueError(f"{name!r} takes no severity; call {hint} instead of perturb()")
    tune_allocator_once()  # the CLI's allocator settings for library calls too (robustlab.runtime; opt-out there)
    if isinstance(images, torch.Tensor) and not images.is_contiguous():
        # the kernels index and shift whole rows of NCHW planes; a channels-last batch (e.g. a permuted NHWC array)
        # made motion and zoom blur 3x slower, which one copy here avoids. The result is NCHW-contiguous
        images = images.contiguous()
    out = fn(images, severity, generator=generator, profile=profile, **kwargs)
    if jpeg_quality is not None:
        out = jpeg.jpeg_roundtrip(out, jpeg_quality)
    return out


def perturbation_sequence(
    images: Tensor,
    name: str,
    *,
    generator: Generators = None,
    profile: str | None = None,
    frames: int | None = None,
    **kwargs: Any,
) -> Tensor:
    """An ImageNet-P / CIFAR-P style sequence of frames for each image.

    Args:
        images: clean pixels.
        name: a sequence, e.g. ``"rotate"`` or ``"rotate_sequence"`` (see :data:`SEQUENCES`).
        generator: one generator, or one per sample.
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"`` frame counts and steps; default from the image size.
        frames: number of frames (default: the original's).
        kwargs: extra options of that sequence (e.g. ``crop``).

    Returns:
        Frames ``(N, T, C, H, W)`` in [0, 1]. Compare noise sequences (:data:`NOISE_SEQUENCES`) with the first
        frame and the others with the previous one (:func:`robustlab.metrics.flip_probability`).
    """
    key = name if name.endswith("_sequence") else f"{name}_sequence"
    return PERTURBATIONS.get(key)(images, generator=generator, profile=profile, frames=frames, **kwargs)


def list_perturbations() -> list[str]:
    """Every registered perturbation name."""
    return PERTURBATIONS.names()


# robustlab.perturb(images, name, severity) calls perturb(): the subpackage is also the top-level front door
make_callable(__name__, perturb)
