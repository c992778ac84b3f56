"""Geometric sequences: translate, rotate, shear, scale, tilt and the zoom-blur build-up, each one batched
``grid_sample`` through the torchvision-0.2 affine or OpenCV perspective maps of the originals.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab.perturb._registry import PERTURBATIONS
from robustlab.perturb.sequences._recipes import _check_padding, _setup, _steps
from robustlab.rng import Generators

__all__ = [
    "affine_warp",
    "perspective_warp",
    "rotate_sequence",
    "scale_sequence",
    "shear_sequence",
    "tilt_sequence",
    "translate_sequence",
    "zoom_blur_sequence",
]


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
    generator: Generators = None,
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
    generator: Generators = None,
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
    generator: Generators = None,
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
    generator: Generators = None,
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
    generator: Generators = None,
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
    generator: Generators = None,
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
