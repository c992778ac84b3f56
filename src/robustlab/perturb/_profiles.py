"""Severity parameter tables of the common-corruption benchmarks, per resolution profile.

Source: the original benchmark code, hendrycks/robustness (`ImageNet-C/create_c/make_imagenet_c.py`,
`ImageNet-C/create_c/make_cifar_c.py`, `ImageNet-C/create_c/make_tinyimagenet_c.py`), as collected in
shared/REFERENCE.md ("Corruption severity tables"). Each entry lists severities 1..5 in order.

Profiles: ``imagenet`` (224 px ImageNet-C), ``cifar`` (32 px CIFAR-10/100-C), ``tiny`` (64 px Tiny-ImageNet-C and
ImageNet-64-C).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from robustlab._checks import check_severity
from robustlab._registry import close_matches_message

PROFILES = ("imagenet", "cifar", "tiny")
PROFILE_SIZE = {"imagenet": 224, "cifar": 32, "tiny": 64}

# The 15 corruptions of mCE, and the 4 held-out validation corruptions (never part of mCE).
TEST_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog",
    "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)  # fmt: skip
VALIDATION_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL_CORRUPTIONS = TEST_CORRUPTIONS + VALIDATION_CORRUPTIONS


def _zooms(max_zoom: float, step: float) -> np.ndarray:
    # np.arange(1, max, step) exactly as the original, float rounding included
    return np.arange(1, max_zoom, step)


def _scaled(size: int, *triples: tuple[float, float, float]) -> tuple[tuple[float, float, float], ...]:
    return tuple((size * a, size * b, size * c) for a, b, c in triples)


SEVERITY_TABLES: dict[str, dict[str, tuple[Any, ...]]] = {
    # noise: σ of additive Gaussian noise on [0, 1] pixels
    "gaussian_noise": {
        "imagenet": (0.08, 0.12, 0.18, 0.26, 0.38),
        "cifar": (0.04, 0.06, 0.08, 0.09, 0.10),
        "tiny": (0.04, 0.08, 0.12, 0.15, 0.18),
    },
    # Poisson rate λ: poisson(x * λ) / λ
    "shot_noise": {
        "imagenet": (60, 25, 12, 5, 3),
        "cifar": (500, 250, 100, 75, 50),
        "tiny": (250, 100, 50, 30, 15),
    },
    # salt-and-pepper amount
    "impulse_noise": {
        "imagenet": (0.03, 0.06, 0.09, 0.17, 0.27),
        "cifar": (0.01, 0.02, 0.03, 0.05, 0.07),
        "tiny": (0.01, 0.02, 0.05, 0.08, 0.14),
    },
    # σ of multiplicative Gaussian noise: x + x * N(0, σ²)
    "speckle_noise": {
        "imagenet": (0.15, 0.2, 0.35, 0.45, 0.6),
        "cifar": (0.06, 0.1, 0.12, 0.16, 0.2),
        "tiny": (0.15, 0.2, 0.25, 0.3, 0.35),
    },
    # blur σ in pixels
    "gaussian_blur": {
        "imagenet": (1, 2, 3, 4, 6),
        "cifar": (0.4, 0.6, 0.7, 0.8, 1),
        "tiny": (0.5, 0.75, 1, 1.25, 1.5),
    },
    # (σ, max pixel shift δ, iterations)
    "glass_blur": {
        "imagenet": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
        "cifar": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
        "tiny": ((0.1, 1, 1), (0.5, 1, 1), (0.6, 1, 2), (0.7, 2, 1), (0.9, 2, 2)),
    },
    # (disk radius, anti-alias blur σ)
    "defocus_blur": {
        "imagenet": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
        "cifar": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
        "tiny": ((0.5, 0.6), (1, 0.1), (1.5, 0.1), (2.5, 0.01), (3, 0.1)),
    },
    # (radius, σ); angle ~ U(-45°, 45°)
    "motion_blur": {
        "imagenet": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
        "cifar": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
        "tiny": ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)),
    },
    # zoom factors averaged with the image
    "zoom_blur": {
        "imagenet": (
            _zooms(1.11, 0.01),
            _zooms(1.16, 0.01),
            _zooms(1.21, 0.02),
            _zooms(1.26, 0.02),
            _zooms(1.31, 0.03),
        ),
        "cifar": (_zooms(1.06, 0.01), _zooms(1.11, 0.01), _zooms(1.16, 0.01), _zooms(1.21, 0.01), _zooms(1.26, 0.01)),
        "tiny": (_zooms(1.06, 0.01), _zooms(1.11, 0.01), _zooms(1.16, 0.01), _zooms(1.21, 0.01), _zooms(1.26, 0.01)),
    },  # fmt: skip
    # (plasma-fractal strength, wibble decay)
    "fog": {
        "imagenet": ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)),
        "cifar": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
        "tiny": ((0.4, 3), (0.7, 3), (1, 2.5), (1.5, 2), (2, 1.75)),
    },
    # (image weight, frost-texture weight)
    "frost": {
        "imagenet": ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
        "cifar": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
        "tiny": ((1, 0.3), (0.9, 0.4), (0.8, 0.45), (0.75, 0.5), (0.7, 0.55)),
    },
    # (mean, std, zoom, threshold, blur radius, blur σ, blend)
    "snow": {
        "imagenet": (
            (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
            (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
            (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
            (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
            (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
        ),
        "cifar": (
            (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
            (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
            (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
            (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
            (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
        ),
        "tiny": (
            (0.1, 0.2, 1, 0.6, 8, 3, 0.8),
            (0.1, 0.2, 1, 0.5, 10, 4, 0.8),
            (0.15, 0.3, 1.75, 0.55, 10, 4, 0.7),
            (0.25, 0.3, 2.25, 0.6, 12, 6, 0.65),
            (0.3, 0.3, 1.25, 0.65, 14, 12, 0.6),
        ),
    },  # fmt: skip
    # (mean, std, σ, threshold, intensity, mode 0 = water / 1 = mud)
    "spatter": {
        "imagenet": (
            (0.65, 0.3, 4, 0.69, 0.6, 0),
            (0.65, 0.3, 3, 0.68, 0.6, 0),
            (0.65, 0.3, 2, 0.68, 0.5, 0),
            (0.65, 0.3, 1, 0.65, 1.5, 1),
            (0.67, 0.4, 1, 0.65, 1.5, 1),
        ),
        "cifar": (
            (0.62, 0.1, 0.7, 0.7, 0.5, 0),
            (0.65, 0.1, 0.8, 0.7, 0.5, 0),
            (0.65, 0.3, 1, 0.69, 0.5, 0),
            (0.65, 0.1, 0.7, 0.69, 0.6, 1),
            (0.65, 0.1, 0.5, 0.68, 0.6, 1),
        ),
        "tiny": (
            (0.62, 0.1, 0.7, 0.7, 0.6, 0),
            (0.65, 0.1, 0.8, 0.7, 0.6, 0),
            (0.65, 0.3, 1, 0.69, 0.6, 0),
            (0.65, 0.1, 0.7, 0.68, 0.6, 1),
            (0.65, 0.1, 0.5, 0.67, 0.6, 1),
        ),
    },  # fmt: skip
    # contrast factor around the per-image mean
    "contrast": {
        "imagenet": (0.4, 0.3, 0.2, 0.1, 0.05),
        "cifar": (0.75, 0.5, 0.4, 0.3, 0.15),
        "tiny": (0.4, 0.3, 0.2, 0.1, 0.05),
    },
    # additive V in HSV
    "brightness": {
        "imagenet": (0.1, 0.2, 0.3, 0.4, 0.5),
        "cifar": (0.05, 0.1, 0.15, 0.2, 0.3),
        "tiny": (0.1, 0.2, 0.3, 0.4, 0.5),
    },
    # (S multiplier, S offset) in HSV
    "saturate": {
        "imagenet": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
        "cifar": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
        "tiny": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (30, 0.2)),
    },
    # JPEG quality
    "jpeg_compression": {
        "imagenet": (25, 18, 15, 10, 7),
        "cifar": (80, 65, 58, 50, 40),
        "tiny": (65, 58, 50, 40, 25),
    },
    # downscale factor (box filter down, box filter up)
    "pixelate": {
        "imagenet": (0.6, 0.5, 0.4, 0.3, 0.25),
        "cifar": (0.95, 0.9, 0.85, 0.75, 0.65),
        "tiny": (0.9, 0.8, 0.7, 0.6, 0.5),
    },
    # (α, σ, affine jitter) in pixels; "244" is the original code's typo for 224, kept for fidelity
    "elastic_transform": {
        "imagenet": _scaled(
            244, (2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02), (0.12, 0.01, 0.02)
        ),
        "cifar": _scaled(32, (0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)),
        "tiny": _scaled(64, (0, 0, 0.08), (0.05, 0.3, 0.06), (0.1, 0.08, 0.06), (0.1, 0.03, 0.03), (0.16, 0.03, 0.02)),
    },  # fmt: skip
}


def resolve_profile(profile: str | None, height: int, width: int) -> str:
    """The parameter profile to use: ``profile`` if given, else the one whose native size fits the image.

    Images of exactly 32, 64 or 224 px get their benchmark's profile; other sizes get the nearest one (on a log
    scale of the shorter side) with a warning, because the benchmarks define parameters for those sizes only.

    Raises:
        ValueError: an unknown profile name.
    """
    if profile is not None:
        if profile not in PROFILES:
            raise ValueError(close_matches_message("profile", str(profile), list(PROFILES)))
        return profile
    side = min(height, width)
    for name, size in PROFILE_SIZE.items():
        if height == size and width == size:
            return name
    nearest = min(PROFILES, key=lambda p: abs(np.log(side / PROFILE_SIZE[p])))
    warnings.warn(
        f"images of {height}x{width} px match no benchmark profile exactly; using the {nearest!r} parameters "
        f"({PROFILE_SIZE[nearest]} px). Pass profile= to choose.",
        stacklevel=3,
    )
    return nearest


def severity_params(name: str, severity: int, profile: str) -> Any:
    """The parameters of corruption ``name`` at ``severity`` (1..5) under ``profile``.

    Raises:
        ValueError: unknown corruption or profile, or a severity outside 1..5.
    """
    if name not in SEVERITY_TABLES:
        raise ValueError(close_matches_message("corruption", name, list(SEVERITY_TABLES)))
    if profile not in PROFILES:
        raise ValueError(close_matches_message("profile", str(profile), list(PROFILES)))
    return SEVERITY_TABLES[name][profile][check_severity(severity) - 1]
