"""Shared set-up of every corruption: validate at the boundary, pick the profile, look up the parameters."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from robustlab._checks import check_images, check_severity
from robustlab.perturb._profiles import resolve_profile, severity_params


def setup_corruption(name: str, images: Tensor, severity: int, profile: str | None) -> tuple[Any, str]:
    """Validate a corruption call and return ``(params, profile)``.

    Raises:
        ValueError: images not ``(N, 3, H, W)`` float in [0, 1], severity outside 1..5, unknown profile.
    """
    check_images(images)
    if images.shape[1] != 3:
        hint = " (grey images: images.expand(-1, 3, -1, -1))" if images.shape[1] == 1 else ""
        raise ValueError(f"{name} needs RGB images (N, 3, H, W), got shape {tuple(images.shape)}{hint}")
    severity = check_severity(severity)
    profile = resolve_profile(profile, images.shape[-2], images.shape[-1])
    return severity_params(name, severity, profile), profile
