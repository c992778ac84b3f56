"""Perturbation sequences of ImageNet-P / CIFAR-P / Tiny-ImageNet-P (Hendrycks & Dietterich 2019).

Each function turns a batch of images into short "videos" whose frames change a little at a time; a model's flip
probability over consecutive frames measures its stability. Every sequence is
``fn(images, *, generator=None, profile=None, frames=None) -> (N, T, C, H, W)`` and is registered in
:data:`~robustlab.perturb.PERTURBATIONS` as ``<perturbation>_sequence``.

Source: the original generators, hendrycks/robustness ``ImageNet-P/create_p/make_imagenet_p.py`` (224 px, test
and validation perturbations), ``make_cifar_p.py`` (32 px) and ``make_tinyimagenet_p.py`` (64 px). The frame
counts and per-frame parameters below are theirs (:data:`SEQUENCE_TABLES`); frame ``i`` counts from 0.

=================  =====================================  =====================================  ==================
sequence           ImageNet-P (224)                       CIFAR-P (32)                           Tiny-ImageNet-P
=================  =====================================  =====================================  ==================
gaussian_noise     clean + 30 × (x + N(0, .03²))          clean + 30, σ = .02                    σ = .025
shot_noise         clean + 30 × Poisson(300 x) / 300      λ = 700                                λ = 500
motion_blur        31, r 10, σ 3, angle 4(i − 30)°        21, r 6, σ 1.8, angle 9(i − 20)°       31, r 14, σ 3
zoom_blur          31, running mean of zooms 1 + .004 i   same                                   same
snow               31, one layer, blur angle 4i − 150°    same recipe, smaller zoom              same recipe
brightness         31, HSV V + .02 (i − 15)               V + .015 (i − 15)                      V + .02 (i − 15)
translate          41, shift i − 20 px                    16, shift i − 7 px                     31, i − 15 px
rotate             31, angle i − 15°                      same                                   same
tilt               31, 3-D tilt (i − 15)°                 .75 (i − 15)°                          (i − 15)°
scale              31, zoom (40 + 2.5 i) %                (70 + 2 i) %                           (40 + 2.5 i) %
speckle_noise*     clean + 30 × (x + x N(0, .05²))        same                                   same
gaussian_blur*     31, σ = .25 + .035 i                   σ = .3 + .015 i                        σ = .35 + .014 i
spatter*           31, water drops running down           same recipe, smaller drops             same recipe
shear*             31, shear i − 15°                      same                                   same
=================  =====================================  =====================================  ==================

``*`` = the validation perturbations. Choices and differences from the originals, written down:

* **Frames.** The defaults are the originals' counts, the clean image included as frame 0 where the original
  saved it (noise sequences: 31 frames = clean + 30 independent noisy copies; zoom blur starts from the clean
  image too). ``frames=T`` keeps the same parameter range and spaces it evenly over ``T`` frames
  (``linspace(first, last, T)``); for noise sequences ``T`` counts the clean frame (``T − 1`` noisy copies).
* **Flip probability.** The original evaluation (``ImageNet-P/test.py``) compares every frame with the *first* one
  when the perturbation name contains "noise" — gaussian, shot *and* speckle noise — and with the previous frame
  otherwise. :data:`NOISE_SEQUENCES` and :data:`TEMPORAL_SEQUENCES` follow that (REFERENCE.md names only
  gaussian and shot noise among the ten test perturbations; speckle is a validation one).
* **Noise.** Fixed strength, fresh noise per frame, as the originals; noise is drawn per frame and sample from
  the sample's generator, so sample ``i`` of a batch equals sequencing it alone with generator ``i``.
* **Geometry** (translate, rotate, scale, shear, zoom blur; tilt). The originals transform with the
  torchvision 0.2 ``affine`` of their time on PIL images: its rotation angle is *clockwise*, its shear is the
  single-angle ``x``-shear of that version (inverse map ``[[1, tan s], [0, 1 / cos s]]``), and its centre sits
  at pixel index ``(W/2, H/2)`` (half a pixel right of and below the true centre); translate uses nearest
  sampling, the rest bilinear; everything outside the image is black. Tilt is OpenCV's ``warpPerspective`` with
  the originals' 3-D rotation matrix, also centred at index ``(W/2, H/2)``, bilinear, black outside; that matrix
  puts the image at depth ``f + 1`` for focal length ``f = sqrt(W² + H²)``, so even the 0° frame is shrunk by
  ``f / (f + 1)`` (0.978 at 32 px, 0.997 at 256 px), as in the original. All of this is reproduced with one
  batched ``grid_sample`` per call; against PIL with that torchvision version's matrix and against
  ``cv2.warpPerspective`` the frames differ by the 8-bit rounding of those libraries (median ≤ 0.6 / 255), apart
  from a thin line along the edge of the black fill, where PIL fills instead of blending. ImageNet-P and
  Tiny-ImageNet-P transform the image *before* the centre crop (ImageNet-P: ``Resize(256)``, transform,
  ``CenterCrop(224)``), so most borders show real image content; pass that larger image and ``crop=224`` to do
  the same. Without ``crop`` the borders that the original would fill from outside the crop come out black
  (``padding_mode="zeros"``, the original's fill) unless ``padding_mode="border"`` or ``"reflection"`` is asked
  for. CIFAR-P transforms the 32-px image itself, so its black corners are the original's.
* **Blur, snow, spatter, brightness** reuse the corruption cores of :mod:`~robustlab.perturb.blur`,
  :mod:`~robustlab.perturb.weather` and :mod:`~robustlab.perturb.digital` with the originals' per-frame
  parameters; their own docstrings describe how they follow ImageMagick / scikit-image / OpenCV. The Gaussian
  blur uses the filter behind ``blur.apply_gaussian_blur`` directly, because the originals truncate the kernel at
  6 or 7 σ (``apply_gaussian_blur`` has scikit-image's default 4). Tiny-ImageNet-P motion-blurred the full-size
  image and then resized it to 64 px; here the 64-px image is blurred with the same radius and σ.
* **No quantisation, no video.** Frames stay float: the originals' ``uint8`` frame files (truncated by
  ``np.uint8`` / ``ToPILImage``) and, for ImageNet-P / Tiny-ImageNet-P, their H.264 encoding (``-crf 20``, or
  ``-tune grain`` for noise) are not reproduced. Intermediate quantisations that shape a frame (the snow layer
  stored as an 8-bit PNG) are.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab import rng
from robustlab._checks import check_images
from robustlab.perturb._filters import gaussian_blur2d
from robustlab.perturb._profiles import resolve_profile
from robustlab.perturb._registry import PERTURBATIONS
from robustlab.perturb.blur import apply_motion_blur
from robustlab.perturb.digital import apply_brightness
from robustlab.perturb.weather import apply_snow, apply_spatter

__all__ = [
    "NOISE_SEQUENCES",
    "PADDING_MODES",
    "SEQUENCES",
    "SEQUENCE_TABLES",
    "TEMPORAL_SEQUENCES",
    "TEST_SEQUENCES",
    "VALIDATION_SEQUENCES",
    "affine_warp",
    "perspective_warp",
]

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

Generator = torch.Generator | Sequence[torch.Generator] | None


# ------------------------------------------------------------------------------------------ set-up
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
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {', '.join(PADDING_MODES)}, got {padding_mode!r}")
    return padding_mode


# ------------------------------------------------------------------------------------------ warps
def perspective_warp(
    images: Tensor,
    inverse_maps: Tensor,
    *,
    crop: int | None = None,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
) -> Tensor:
    """Warp every image with every map: one batched ``grid_sample`` for all frames.

    Coordinates are pixel indices (pixel ``(0, 0)``'s centre at ``(0, 0)``, x to the right, y down), as in OpenCV.
    Output pixel ``(x, y)`` takes the input at ``inverse_maps[t] @ (x, y, 1)`` (divided by its third entry).

    Args:
        images: pixels.
        inverse_maps: one 3×3 output-to-input map per frame, shared by the batch.
        crop: keep only the central ``crop × crop`` output pixels (torchvision ``CenterCrop`` placement); the maps
            still act on full-image coordinates.
        mode: ``"bilinear"`` or ``"nearest"``.
        padding_mode: what lies outside the image: ``"zeros"`` (black), ``"border"`` or ``"reflection"``.

    Returns:
        The warped frames.

    Shape:
        images ``(N, C, H, W)``, inverse_maps ``(T, 3, 3)`` -> ``(N, T, C, h, w)``, ``h = w = crop`` or ``(H, W)``.

    Raises:
        ValueError: a map tensor of the wrong shape or an unknown padding mode.
    """
    _check_padding(padding_mode)
    if inverse_maps.ndim != 3 or inverse_maps.shape[1:] != (3, 3):
        raise ValueError(f"inverse_maps must have shape (T, 3, 3), got {tuple(inverse_maps.shape)}")
    n, c, height, width = images.shape
    frames = inverse_maps.shape[0]
    out_h, out_w = (crop, crop) if crop is not None else (height, width)
    top, left = int(round((height - out_h) / 2.0)), int(round((width - out_w) / 2.0))
    device = images.device
    # the grid is built in float64 so sub-pixel positions do not depend on the image dtype
    ys = torch.arange(top, top + out_h, dtype=torch.float64, device=device)
    xs = torch.arange(left, left + out_w, dtype=torch.float64, device=device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(-1, 3)  # (h*w, 3)
    src = torch.einsum("tij,pj->tpi", inverse_maps.to(device=device, dtype=torch.float64), points)
    src = src[..., :2] / src[..., 2:3]
    # pixel index -> grid_sample's [-1, 1] (align_corners=False: the image edges sit at ±1)
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=torch.float64, device=device)
    grid = ((src + 0.5) * scale - 1.0).reshape(1, frames * out_h, out_w, 2).to(images.dtype)
    # batch and channels share one grid: fold them into grid_sample's channel dimension
    flat = images.reshape(1, n * c, height, width)
    out = F.grid_sample(flat, grid, mode=mode, padding_mode=padding_mode, align_corners=False)
    return out.reshape(n, c, frames, out_h, out_w).permute(0, 2, 1, 3, 4).clamp_(0.0, 1.0)


def _torchvision02_inverse(
    width: int, height: int, angle: float, translate: tuple[float, float], scale: float, shear: float
) -> np.ndarray:
    """Inverse affine map of torchvision 0.2's ``affine`` (clockwise angle, x-shear) in pixel-index coordinates."""
    a, s = math.radians(angle), math.radians(shear)
    # that version's pixel centre convention puts the centre at index (W/2, H/2)
    cx, cy = width * 0.5, height * 0.5
    d = math.cos(a + s) * math.cos(a) + math.sin(a + s) * math.sin(a)
    m = np.array([[math.cos(a + s), math.sin(a + s)], [-math.sin(a), math.cos(a)]]) / (scale * d)
    shift = np.array([cx, cy]) - m @ np.array([cx + translate[0], cy + translate[1]])
    return np.array([[m[0, 0], m[0, 1], shift[0]], [m[1, 0], m[1, 1], shift[1]], [0.0, 0.0, 1.0]])


def affine_warp(
    images: Tensor,
    *,
    angles: Sequence[float] | None = None,
    translations: Sequence[tuple[float, float]] | None = None,
    scales: Sequence[float] | None = None,
    shears: Sequence[float] | None = None,
    crop: int | None = None,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
) -> Tensor:
    """Apply one torchvision-0.2-style affine transform per frame to every image (ImageNet-P's geometry).

    Args:
        images: pixels.
        angles: clockwise rotation per frame, degrees (default 0).
        translations: ``(dx, dy)`` shift per frame in pixels (default 0).
        scales: zoom factor per frame (default 1).
        shears: x-shear angle per frame, degrees (default 0).
        crop: centre-crop the result to ``crop × crop`` (the originals transform before their crop).
        mode: ``"bilinear"`` or ``"nearest"``.
        padding_mode: ``"zeros"`` (black, the original's fill), ``"border"`` or ``"reflection"``.

    Returns:
        One frame per transform.

    Shape:
        ``(N, C, H, W)`` -> ``(N, T, C, h, w)``.

    Raises:
        ValueError: parameter lists of different lengths or an unknown padding mode.
    """
    given = [p for p in (angles, translations, scales, shears) if p is not None]
    if not given or len({len(p) for p in given}) != 1:
        raise ValueError("affine_warp needs at least one parameter list, all of the same length (one per frame)")
    frames = len(given[0])
    angles = angles if angles is not None else [0.0] * frames
    translations = translations if translations is not None else [(0.0, 0.0)] * frames
    scales = scales if scales is not None else [1.0] * frames
    shears = shears if shears is not None else [0.0] * frames
    height, width = images.shape[-2:]
    maps = np.stack(
        [
            _torchvision02_inverse(width, height, a, (float(t[0]), float(t[1])), float(s), sh)
            for a, t, s, sh in zip(angles, translations, scales, shears, strict=True)
        ]
    )
    return perspective_warp(images, torch.from_numpy(maps), crop=crop, mode=mode, padding_mode=padding_mode)


def _tilt_inverse(width: int, height: int, degrees: float) -> np.ndarray:
    """Inverse of the originals' tilt homography (equal rotations about x and y, camera at focal length f)."""
    phi = theta = math.radians(degrees)
    f = math.sqrt(width**2 + height**2)
    to_centre = np.array([[1, 0, -width / 2], [0, 1, -height / 2], [0, 0, 1], [0, 0, 1]], dtype=np.float64)
    rot_x = np.array(
        [[1, 0, 0, 0], [0, math.cos(theta), -math.sin(theta), 0], [0, math.sin(theta), math.cos(theta), 0],
         [0, 0, 0, 1]]
    )  # fmt: skip
    rot_y = np.array(
        [[math.cos(phi), 0, -math.sin(phi), 0], [0, 1, 0, 0], [math.sin(phi), 0, math.cos(phi), 0], [0, 0, 0, 1]]
    )
    push = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]], dtype=np.float64)
    project = np.array([[f, 0, width / 2, 0], [0, f, height / 2, 0], [0, 0, 1, 0]], dtype=np.float64)
    forward = project @ push @ rot_x @ rot_y @ to_centre
    return np.linalg.inv(forward)


# ------------------------------------------------------------------------------------------ noise
@PERTURBATIONS.register
def gaussian_noise_sequence(
    images: Tensor, *, generator: Generator = None, profile: str | None = None, frames: int | None = None
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
    images: Tensor, *, generator: Generator = None, profile: str | None = None, frames: int | None = None
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
    images: Tensor, *, generator: Generator = None, profile: str | None = None, frames: int | None = None
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


# ------------------------------------------------------------------------------------------ geometry
_GEOMETRY_ARGS = """
    Args:
        images: clean pixels (for the ImageNet-P recipe: the ``Resize(256)`` image, with ``crop=224``).
        generator: unused (the sequence is deterministic); accepted for a uniform signature.
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"``; default chosen from the (cropped) image size.
        frames: frames per sequence (default: the original's count); the same parameter range, evenly spaced.
        crop: centre-crop each transformed frame to ``crop × crop`` as the originals did.
        padding_mode: what fills the area outside the image: ``"zeros"`` (black, the original), ``"border"`` or
            ``"reflection"``.

    Returns:
        The sequences, values in [0, 1], same dtype and device.

    Shape:
        ``(N, C, H, W)`` -> ``(N, T, C, h, w)`` with ``h = w = crop`` if given, else ``(H, W)``.

    Raises:
        ValueError: bad images, profile, frame count, crop or padding mode.
"""


def _with_geometry_args(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    fn.__doc__ = (fn.__doc__ or "").rstrip() + "\n" + _GEOMETRY_ARGS
    return fn


@PERTURBATIONS.register
@_with_geometry_args
def translate_sequence(
    images: Tensor,
    *,
    generator: Generator = None,
    profile: str | None = None,
    frames: int | None = None,
    crop: int | None = None,
    padding_mode: str = "zeros",
) -> Tensor:
    """Horizontal shifts by one pixel per frame: −20..20 px (ImageNet-P), −7..8 (CIFAR-P), −15..15 (Tiny).

    Shifts are whole pixels with nearest sampling, as the original (``frames`` other than the default round the
    evenly spaced shifts to whole pixels).
    """
    recipe, count, size = _setup("translate", images, profile, frames, crop=crop)
    shifts = [(float(round(s)), 0.0) for s in _steps(recipe["shift"], count)]
    return affine_warp(
        images, translations=shifts, crop=size, mode="nearest", padding_mode=_check_padding(padding_mode)
    )


@PERTURBATIONS.register
@_with_geometry_args
def rotate_sequence(
    images: Tensor,
    *,
    generator: Generator = None,
    profile: str | None = None,
    frames: int | None = None,
    crop: int | None = None,
    padding_mode: str = "zeros",
) -> Tensor:
    """Rotations from −15° to 15° in 1° steps (clockwise as torchvision 0.2), bilinear, at every profile."""
    recipe, count, size = _setup("rotate", images, profile, frames, crop=crop)
    return affine_warp(
        images, angles=_steps(recipe["angle"], count), crop=size, padding_mode=_check_padding(padding_mode)
    )


@PERTURBATIONS.register
@_with_geometry_args
def shear_sequence(
    images: Tensor,
    *,
    generator: Generator = None,
    profile: str | None = None,
    frames: int | None = None,
    crop: int | None = None,
    padding_mode: str = "zeros",
) -> Tensor:
    """X-shears from −15° to 15° in 1° steps (torchvision 0.2's shear), bilinear (validation ``shear``)."""
    recipe, count, size = _setup("shear", images, profile, frames, crop=crop)
    return affine_warp(
        images, shears=_steps(recipe["angle"], count), crop=size, padding_mode=_check_padding(padding_mode)
    )


@PERTURBATIONS.register
@_with_geometry_args
def scale_sequence(
    images: Tensor,
    *,
    generator: Generator = None,
    profile: str | None = None,
    frames: int | None = None,
    crop: int | None = None,
    padding_mode: str = "zeros",
) -> Tensor:
    """Zooms from 40 % to 115 % in 2.5 % steps (ImageNet-P, Tiny), 70 % to 130 % in 2 % steps (CIFAR-P)."""
    recipe, count, size = _setup("scale", images, profile, frames, crop=crop)
    return affine_warp(
        images, scales=_steps(recipe["scale"], count), crop=size, padding_mode=_check_padding(padding_mode)
    )


@PERTURBATIONS.register
@_with_geometry_args
def tilt_sequence(
    images: Tensor,
    *,
    generator: Generator = None,
    profile: str | None = None,
    frames: int | None = None,
    crop: int | None = None,
    padding_mode: str = "zeros",
) -> Tensor:
    """3-D tilts about both image axes from −15° to 15° (CIFAR-P: −11.25° to 11.25°), a perspective warp."""
    recipe, count, size = _setup("tilt", images, profile, frames, crop=crop)
    height, width = images.shape[-2:]
    maps = np.stack([_tilt_inverse(width, height, a) for a in _steps(recipe["angle"], count)])
    return perspective_warp(images, torch.from_numpy(maps), crop=size, padding_mode=_check_padding(padding_mode))


@PERTURBATIONS.register
@_with_geometry_args
def zoom_blur_sequence(
    images: Tensor,
    *,
    generator: Generator = None,
    profile: str | None = None,
    frames: int | None = None,
    crop: int | None = None,
    padding_mode: str = "zeros",
) -> Tensor:
    """A growing zoom blur: frame i is the mean of affine zooms 1 + .004 k for k = 0..i (frame 0 = clean).

    The originals (all three sizes) average torchvision affine zooms of the image; ImageNet-C's ``zoom_blur``
    corruption uses a different (clipped scipy) zoom and is not reused here.
    """
    recipe, count, size = _setup("zoom_blur", images, profile, frames, crop=crop)
    zoomed = affine_warp(
        images, scales=_steps(recipe["zoom"], count), crop=size, padding_mode=_check_padding(padding_mode)
    )
    steps = torch.arange(1, count + 1, device=images.device, dtype=images.dtype).view(1, count, 1, 1, 1)
    return (zoomed.cumsum(dim=1) / steps).clamp_(0.0, 1.0)


# ------------------------------------------------------------------------------------------ blur, weather, colour
_FRAME_ARGS = """
    Args:
        images: clean pixels.
        generator: {generator}
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"``; default chosen from the image size.
        frames: frames per sequence (default: the original's count); the same parameter range, evenly spaced.

    Returns:
        The sequences, values in [0, 1], same dtype and device.

    Shape:
        ``(N, 3, H, W)`` -> ``(N, T, 3, H, W)``.

    Raises:
        ValueError: bad images (RGB needed), profile or frame count.
"""
_DETERMINISTIC = "unused (the sequence is deterministic); accepted for a uniform signature."
_RANDOM = "one generator, or one per sample (a sample's random layer comes from it alone)."


def _with_frame_args(generator: str) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    def decorate(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        fn.__doc__ = (fn.__doc__ or "").rstrip() + "\n" + _FRAME_ARGS.format(generator=generator)
        return fn

    return decorate


def _repeat_frames(images: Tensor, frames: int) -> Tensor:
    """``(N, C, H, W)`` -> ``(N * T, C, H, W)``, sample-major, so one batched core call renders every frame."""
    return images.unsqueeze(1).expand(-1, frames, -1, -1, -1).reshape(-1, *images.shape[1:])


@PERTURBATIONS.register
@_with_frame_args(_DETERMINISTIC)
def motion_blur_sequence(
    images: Tensor, *, generator: Generator = None, profile: str | None = None, frames: int | None = None
) -> Tensor:
    """An ImageMagick motion blur of fixed strength whose angle turns frame by frame.

    ImageNet-P: radius 10, σ 3, angles −120°..0° in 4° steps (31 frames); CIFAR-P: radius 6, σ 1.8, −180°..0° in
    9° steps (21 frames); Tiny-ImageNet-P: radius 14, σ 3, −150°..0° in 5° steps (31 frames; the original blurred
    the full-size image before resizing it to 64 px, here the 64-px image itself is blurred). The blur is
    :func:`robustlab.perturb.blur.apply_motion_blur`, the core of the ``motion_blur`` corruption.
    """
    recipe, count, _ = _setup("motion_blur", images, profile, frames, rgb=True)
    n = images.shape[0]
    angles = _steps(recipe["angle"], count) * n
    out = apply_motion_blur(_repeat_frames(images, count), recipe["radius"], recipe["sigma"], angles)
    return out.reshape(n, count, *images.shape[1:])


@PERTURBATIONS.register
@_with_frame_args(_RANDOM)
def snow_sequence(
    images: Tensor, *, generator: Generator = None, profile: str | None = None, frames: int | None = None
) -> Tensor:
    """Falling snow: one random snow layer per image, motion-blurred at an angle that turns frame by frame.

    The layer is ``N(.05, .3²)`` per pixel (Tiny-ImageNet-P: σ .28), zoomed ×3 (ImageNet-P) or ×2 (CIFAR-P,
    Tiny), thresholded at .5 and streaked by an ImageMagick motion blur (radius 14, σ 4 / radius 10, σ 2 / radius
    10, σ 2.5) at −150°..−30° in 4° steps; each frame adds it and its 180° turn to the image paled as
    ``.85 x + .15 max(x, 1.5 gray + .5)``. The rendering is :func:`robustlab.perturb.weather.apply_snow`, the core
    of the ``snow`` corruption.
    """
    recipe, count, _ = _setup("snow", images, profile, frames, rgb=True)
    n, _, height, width = images.shape
    layer = recipe["loc"] + recipe["scale"] * rng.randn(
        (n, height, width), generator=generator, device=images.device, dtype=torch.float32
    )
    out = apply_snow(
        _repeat_frames(images, count),
        layer.repeat_interleave(count, dim=0),
        zoom=recipe["zoom"],
        threshold=0.5,
        radius=recipe["radius"],
        sigma=recipe["sigma"],
        angles=_steps(recipe["angle"], count) * n,
        blend=0.85,
    )
    return out.reshape(n, count, *images.shape[1:])


@PERTURBATIONS.register
@_with_frame_args(_DETERMINISTIC)
def brightness_sequence(
    images: Tensor, *, generator: Generator = None, profile: str | None = None, frames: int | None = None
) -> Tensor:
    """Brightness from dark to bright: HSV value shifted by −.30..+.30 (CIFAR-P: −.225..+.225) in 31 frames.

    Each frame is :func:`robustlab.perturb.digital.apply_brightness`, the core of the ``brightness`` corruption
    (scikit-image's HSV round trip).
    """
    recipe, count, _ = _setup("brightness", images, profile, frames, rgb=True)
    return torch.stack([apply_brightness(images, shift) for shift in _steps(recipe["shift"], count)], dim=1)


@PERTURBATIONS.register
@_with_frame_args(_DETERMINISTIC)
def gaussian_blur_sequence(
    images: Tensor, *, generator: Generator = None, profile: str | None = None, frames: int | None = None
) -> Tensor:
    """A Gaussian blur growing frame by frame (validation ``gaussian_blur``).

    σ = .25..1.30 with truncate 6 (ImageNet-P), .30..0.75 with truncate 7 (CIFAR-P), .35..0.77 with truncate 7
    (Tiny), 31 frames, scikit-image's ``gaussian`` (edge pixels repeated) as
    :func:`robustlab.perturb._filters.gaussian_blur2d`.
    """
    recipe, count, _ = _setup("gaussian_blur", images, profile, frames, rgb=True)
    # blur.apply_gaussian_blur has no truncate argument; its filter is this one with truncate 4
    work = images.to(torch.promote_types(images.dtype, torch.float32))
    blurred = [gaussian_blur2d(work, sigma, truncate=recipe["truncate"]) for sigma in _steps(recipe["sigma"], count)]
    return torch.stack(blurred, dim=1).clamp_(0.0, 1.0).to(images.dtype)


def _fall(layer: Tensor, kernel: Sequence[float]) -> Tensor:
    """One step of the liquid running down: ``np.convolve(column, kernel, mode="same")`` on every column."""
    taps = len(kernel)
    start = (taps - 1) // 2
    # out[y] = Σ_k kernel[k] · layer[y + start − k], zero outside the image
    padded = F.pad(layer, (0, 0, taps - 1 - start, start))
    height = layer.shape[-2]
    out = torch.zeros_like(layer)
    for k, weight in enumerate(kernel):
        offset = taps - 1 - k
        out += weight * padded[..., offset : offset + height, :]
    return out


@PERTURBATIONS.register
@_with_frame_args(_RANDOM)
def spatter_sequence(
    images: Tensor, *, generator: Generator = None, profile: str | None = None, frames: int | None = None
) -> Tensor:
    """Water drops running down the image (validation ``spatter``).

    One liquid layer per image, ``N(.65, .27²)`` blurred by σ 3.7 and thresholded at .69 (ImageNet-P; CIFAR-P
    and Tiny: ``N(.6, .265²)`` / ``N(.6, .25²)``, σ 1.75, threshold .7), is rendered as water (intensity .6) by
    :func:`robustlab.perturb.weather.apply_spatter`, the core of the ``spatter`` corruption; between frames the
    layer runs down by a vertical convolution with ``(.05, .1, .15, .7)`` (CIFAR-P, Tiny: ``(.2, .8)``), as the
    original, without a new threshold.
    """
    recipe, count, _ = _setup("spatter", images, profile, frames, rgb=True)
    n, _, height, width = images.shape
    raw = recipe["loc"] + recipe["scale"] * rng.randn(
        (n, height, width), generator=generator, device=images.device, dtype=torch.float32
    )
    # blurred and thresholded once, in float64 as apply_spatter does; later frames only let it run down
    layer = gaussian_blur2d(raw.to(torch.float64), recipe["sigma"])
    layer = torch.where(layer < recipe["threshold"], torch.zeros_like(layer), layer)
    layers = [layer]
    for _ in range(count - 1):
        layers.append(_fall(layers[-1], recipe["fall"]))
    # σ = 0 and threshold 0 make apply_spatter use each prepared layer as it is
    out = apply_spatter(
        _repeat_frames(images, count),
        torch.stack(layers, dim=1).reshape(n * count, height, width),
        sigma=0.0,
        threshold=0.0,
        intensity=0.6,
        mud=False,
    )
    return out.reshape(n, count, *images.shape[1:])


# ------------------------------------------------------------------------------------------ groups
# the 10 test perturbations of ImageNet-P (mFR) and the 4 validation ones, by registry name
TEST_SEQUENCES = tuple(
    f"{p}_sequence"
    for p in (
        "gaussian_noise", "shot_noise", "motion_blur", "zoom_blur", "snow",
        "brightness", "translate", "rotate", "tilt", "scale",
    )
)  # fmt: skip
VALIDATION_SEQUENCES = tuple(f"{p}_sequence" for p in ("speckle_noise", "gaussian_blur", "spatter", "shear"))
# compared with the first frame for the flip probability ('noise' in the name, ImageNet-P/test.py) ...
NOISE_SEQUENCES = ("gaussian_noise_sequence", "shot_noise_sequence", "speckle_noise_sequence")
# ... and these with the previous frame
TEMPORAL_SEQUENCES = tuple(s for s in TEST_SEQUENCES + VALIDATION_SEQUENCES if s not in NOISE_SEQUENCES)
# the sequences this module implements (registered in PERTURBATIONS)
SEQUENCES = tuple(s for s in TEST_SEQUENCES + VALIDATION_SEQUENCES if s in PERTURBATIONS)
