"""Perturbations of [0, 1] pixel tensors: the 19 common corruptions, sequences, patch occlusion and noise.

Every corruption is a function ``(images, severity, *, generator=None, profile=None) -> images`` registered in
:data:`PERTURBATIONS` under its name; :func:`perturb` is the front door.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

# imported for their @PERTURBATIONS.register side effect
from robustlab.perturb import blur, digital, jpeg, noise, weather  # noqa: F401
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
from robustlab.perturb.sweep import additive_gaussian_noise

__all__ = [
    "ALL_CORRUPTIONS",
    "PERTURBATIONS",
    "PROFILES",
    "SEVERITY_TABLES",
    "TEST_CORRUPTIONS",
    "VALIDATION_CORRUPTIONS",
    "additive_gaussian_noise",
    "list_perturbations",
    "perturb",
    "resolve_profile",
    "severity_params",
]


def perturb(
    images: Tensor,
    name: str,
    severity: int,
    *,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
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
    out = fn(images, severity, generator=generator, profile=profile, **kwargs)
    if jpeg_quality is not None:
        out = jpeg.jpeg_roundtrip(out, jpeg_quality)
    return out


def list_perturbations() -> list[str]:
    """Every registered perturbation name."""
    return PERTURBATIONS.names()
