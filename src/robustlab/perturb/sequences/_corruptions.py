"""Sequences that replay a corruption core with per-frame parameters: motion blur, snow, brightness, Gaussian
blur and spatter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab import rng
from robustlab.perturb._filters import gaussian_blur2d
from robustlab.perturb._registry import PERTURBATIONS
from robustlab.perturb.blur import apply_motion_blur
from robustlab.perturb.digital import apply_brightness
from robustlab.perturb.sequences._recipes import _setup, _steps
from robustlab.perturb.weather import apply_snow, apply_spatter
from robustlab.rng import Generators

__all__ = [
    "brightness_sequence",
    "gaussian_blur_sequence",
    "motion_blur_sequence",
    "snow_sequence",
    "spatter_sequence",
]

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
    images: Tensor, *, generator: Generators = None, profile: str | None = None, frames: int | None = None
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
    images: Tensor, *, generator: Generators = None, profile: str | None = None, frames: int | None = None
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
    images: Tensor, *, generator: Generators = None, profile: str | None = None, frames: int | None = None
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
    images: Tensor, *, generator: Generators = None, profile: str | None = None, frames: int | None = None
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
    images: Tensor, *, generator: Generators = None, profile: str | None = None, frames: int | None = None
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
