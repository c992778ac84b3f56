"""Recipes of the perturbation sequences (frame counts, per-frame parameter ranges) and the checks every
sequence runs first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from robustlab._checks import check_choice, check_images
from robustlab.perturb._profiles import resolve_profile

__all__ = ["PADDING_MODES", "SEQUENCE_TABLES"]

PADDING_MODES = ("zeros", "border", "reflection")

# Per-profile recipe of every sequence: frame count and the first / last value of each per-frame parameter
# (the originals step linearly between them). Source: hendrycks/robustness ImageNet-P/create_p/
# make_imagenet_p.py ("imagenet"), make_cifar_p.py ("cifar"), make_tinyimagenet_p.py ("tiny").
SEQUENCE_TABLES: dict[str, dict[str, dict[str, Any]]] = {
    # frame 0 clean, then independent clamp(x + σ n)
    "gaussian_noise": {
        "imagenet": {"frames": 31, "sigma": 0.03},
        "cifar": {"frames": 31, "sigma": 0.02},
        "tiny": {"frames": 31, "sigma": 0.025},
    },
    # frame 0 clean, then independent clip(Poisson(λ x) / λ)
    "shot_noise": {
        "imagenet": {"frames": 31, "rate": 300},
        "cifar": {"frames": 31, "rate": 700},
        "tiny": {"frames": 31, "rate": 500},
    },
    # frame 0 clean, then independent clip(x + x σ n)
    "speckle_noise": {
        "imagenet": {"frames": 31, "sigma": 0.05},
        "cifar": {"frames": 31, "sigma": 0.05},
        "tiny": {"frames": 31, "sigma": 0.05},
    },
    # ImageMagick motion blur (radius, σ) at angle(i); Tiny-ImageNet-P blurred the full-size image before its
    # resize to 64 px, here the 64-px image is blurred with the same (radius, σ)
    "motion_blur": {
        "imagenet": {"frames": 31, "radius": 10, "sigma": 3, "angle": (-120.0, 0.0)},
        "cifar": {"frames": 21, "radius": 6, "sigma": 1.8, "angle": (-180.0, 0.0)},
        "tiny": {"frames": 31, "radius": 14, "sigma": 3, "angle": (-150.0, 0.0)},
    },
    # running mean of affine zooms 1 + .004 k, k = 0..i
    "zoom_blur": {
        "imagenet": {"frames": 31, "zoom": (1.0, 1.12)},
        "cifar": {"frames": 31, "zoom": (1.0, 1.12)},
        "tiny": {"frames": 31, "zoom": (1.0, 1.12)},
    },
    # one snow layer N(loc, scale²) on an (H, W) grid, clipped-zoomed, thresholded at .5, stored as 8-bit; each
    # frame motion-blurs it at angle(i) and adds it and its 180° rotation to the whitened image
    "snow": {
        "imagenet": {
            "frames": 31,
            "loc": 0.05,
            "scale": 0.3,
            "zoom": 3,
            "radius": 14,
            "sigma": 4,
            "angle": (-150.0, -30.0),
        },
        "cifar": {
            "frames": 31,
            "loc": 0.05,
            "scale": 0.3,
            "zoom": 2,
            "radius": 10,
            "sigma": 2,
            "angle": (-150.0, -30.0),
        },
        "tiny": {
            "frames": 31,
            "loc": 0.05,
            "scale": 0.28,
            "zoom": 2,
            "radius": 10,
            "sigma": 2.5,
            "angle": (-150.0, -30.0),
        },
    },  # fmt: skip
    # HSV value + c(i), clipped
    "brightness": {
        "imagenet": {"frames": 31, "shift": (-0.30, 0.30)},
        "cifar": {"frames": 31, "shift": (-0.225, 0.225)},
        "tiny": {"frames": 31, "shift": (-0.30, 0.30)},
    },
    # horizontal shift in whole pixels (nearest sampling), one pixel per frame
    "translate": {
        "imagenet": {"frames": 41, "shift": (-20.0, 20.0)},
        "cifar": {"frames": 16, "shift": (-7.0, 8.0)},
        "tiny": {"frames": 31, "shift": (-15.0, 15.0)},
    },
    # rotation in degrees (clockwise, torchvision 0.2), bilinear
    "rotate": {
        "imagenet": {"frames": 31, "angle": (-15.0, 15.0)},
        "cifar": {"frames": 31, "angle": (-15.0, 15.0)},
        "tiny": {"frames": 31, "angle": (-15.0, 15.0)},
    },
    # equal tilts about the x and y axes in degrees (OpenCV perspective warp), bilinear
    "tilt": {
        "imagenet": {"frames": 31, "angle": (-15.0, 15.0)},
        "cifar": {"frames": 31, "angle": (-11.25, 11.25)},
        "tiny": {"frames": 31, "angle": (-15.0, 15.0)},
    },
    # affine zoom factor, bilinear, black outside
    "scale": {
        "imagenet": {"frames": 31, "scale": (0.40, 1.15)},
        "cifar": {"frames": 31, "scale": (0.70, 1.30)},
        "tiny": {"frames": 31, "scale": (0.40, 1.15)},
    },
    # scikit-image gaussian(σ(i), truncate)
    "gaussian_blur": {
        "imagenet": {"frames": 31, "sigma": (0.25, 1.30), "truncate": 6.0},
        "cifar": {"frames": 31, "sigma": (0.30, 0.75), "truncate": 7.0},
        "tiny": {"frames": 31, "sigma": (0.35, 0.77), "truncate": 7.0},
    },
    # one liquid layer N(loc, scale²), blurred by σ, thresholded; each frame renders water drops and then lets
    # the layer run down one step (a vertical 'same' convolution with `fall`)
    "spatter": {
        "imagenet": {
            "frames": 31,
            "loc": 0.65,
            "scale": 0.27,
            "sigma": 3.7,
            "threshold": 0.69,
            "fall": (0.05, 0.1, 0.15, 0.7),
        },
        "cifar": {"frames": 31, "loc": 0.6, "scale": 0.265, "sigma": 1.75, "threshold": 0.7, "fall": (0.2, 0.8)},
        "tiny": {"frames": 31, "loc": 0.6, "scale": 0.25, "sigma": 1.75, "threshold": 0.7, "fall": (0.2, 0.8)},
    },  # fmt: skip
    # x-shear angle in degrees (torchvision 0.2), bilinear
    "shear": {
        "imagenet": {"frames": 31, "angle": (-15.0, 15.0)},
        "cifar": {"frames": 31, "angle": (-15.0, 15.0)},
        "tiny": {"frames": 31, "angle": (-15.0, 15.0)},
    },
}


def _check_frames(frames: object) -> int | None:
    if frames is None:
        return None
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or int(frames) < 2:
        raise ValueError(f"frames must be an integer >= 2 (frames per sequence), got {frames!r}")
    return int(frames)


def _check_crop(crop: object, height: int, width: int) -> int | None:
    if crop is None:
        return None
    if isinstance(crop, bool) or not isinstance(crop, (int, np.integer)) or int(crop) < 1:
        raise ValueError(f"crop must be a positive integer (the square output size), got {crop!r}")
    if crop > min(height, width):
        raise ValueError(f"crop={crop} is larger than the images ({height}x{width}); pass crop <= {min(height, width)}")
    return int(crop)


def _setup(
    name: str,
    images: Tensor,
    profile: str | None,
    frames: object,
    *,
    rgb: bool = False,
    crop: object = None,
) -> tuple[dict[str, Any], int, int | None]:
    """Validate a sequence call; return ``(recipe, frame count, crop)``."""
    check_images(images)
    if rgb and images.shape[1] != 3:
        raise ValueError(f"{name}_sequence needs RGB images (N, 3, H, W), got shape {tuple(images.shape)}")
    height, width = images.shape[-2:]
    size = _check_crop(crop, height, width)
    profile = resolve_profile(profile, size or height, size or width)
    recipe = SEQUENCE_TABLES[name][profile]
    count = _check_frames(frames) or recipe["frames"]
    return recipe, count, size


def _steps(span: tuple[float, float], frames: int) -> list[float]:
    """The per-frame values of a parameter that runs linearly over ``span``."""
    return [float(v) for v in np.linspace(span[0], span[1], frames)]


def _check_padding(padding_mode: str) -> str:
    """``padding_mode`` when it is one of :data:`PADDING_MODES`; ``ValueError`` with close matches otherwise."""
    return check_choice(padding_mode, PADDING_MODES, "padding_mode")
