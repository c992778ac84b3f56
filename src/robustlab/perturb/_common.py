"""Shared set-up of every corruption: validate at the boundary, pick the profile, look up the parameters."""

from __future__ import annotations

from typing import Any

import torch
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


def work_dtype(images: Tensor) -> torch.dtype:
    """The dtype to compute in: half types lack CPU kernels for some ops and lose noise resolution, so float32."""
    return torch.float32 if images.dtype in (torch.float16, torch.bfloat16) else images.dtype


def per_sample(value: float | Tensor, images: Tensor, dtype: torch.dtype) -> float | Tensor:
    """A scalar stays a float; a tensor of one value per sample becomes ``(N, 1, 1, 1)``.

    Raises:
        ValueError: a tensor that is neither one value nor one value per image.
    """
    if not isinstance(value, Tensor):
        return float(value)
    if value.numel() == 1:
        return float(value.reshape(()))
    if value.ndim != 1 or value.shape[0] != images.shape[0]:
        raise ValueError(
            f"a per-sample parameter must have shape ({images.shape[0]},) for {images.shape[0]} images, "
            f"got {tuple(value.shape)}"
        )
    return value.to(device=images.device, dtype=dtype).reshape(-1, 1, 1, 1)
