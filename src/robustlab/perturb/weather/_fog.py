"""Fog: a plasma fractal (diamond-square) added to the image, whose contrast is then restored.

Source of the recipes: hendrycks/robustness, ``ImageNet-C/create_c/make_imagenet_c.py`` (224 px),
``make_cifar_c.py`` (32 px) and ``make_tinyimagenet_c.py`` (64 px). Where ``imagecorruptions`` 1.1.2 departs from
them, the original is followed and the difference is noted in the function's docstring.
"""

from __future__ import annotations

import torch
from torch import Tensor

from robustlab import rng
from robustlab.perturb._common import setup_corruption, work_dtype
from robustlab.perturb._registry import PERTURBATIONS
from robustlab.rng import Generators

__all__ = ["apply_fog", "fog", "plasma_fractal"]


def _next_power_of_two(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def plasma_fractal(
    n: int,
    mapsize: int = 256,
    wibble_decay: float = 3.0,
    *,
    generator: Generators = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Diamond-square plasma fractals, one per sample, normalised to [0, 1].

    The recipe of the benchmark's ``plasma_fractal``: start from a zero corner, then for each step size (mapsize,
    mapsize/2, ..., 2) set square centres to the mean of their four corners and diamond centres to the mean of their
    four neighbours (periodic), each plus ``wibble * U(-wibble, wibble)``; ``wibble`` starts at 100 and is divided
    by ``wibble_decay`` after each step. Every sample draws its ``mapsize² - 1`` uniforms from its own generator, so
    the steps themselves run once for the whole batch.

    Args:
        n: number of maps.
        mapsize: side length, a power of two.
        wibble_decay: factor by which the random amplitude shrinks per octave (larger = smoother).
        generator: one generator, or one per map.
        device: device of the result.
        dtype: floating dtype of the result.

    Returns:
        Maps in [0, 1] (each map's minimum is 0 and maximum 1).

    Shape:
        ``(n, mapsize, mapsize)``.

    Raises:
        ValueError: ``mapsize`` not a power of two, or a generator list of the wrong length.
    """
    if mapsize < 1 or mapsize & (mapsize - 1):
        raise ValueError(f"plasma_fractal mapsize must be a power of two, got {mapsize}")
    # one flat vector of uniforms per sample, consumed level by level in the original's order; U(-1, 1) here
    u = rng.rand((n, mapsize * mapsize - 1), generator=generator, device=device, dtype=dtype).mul_(2).sub_(1)
    # the map is kept as the dense grid of the current step's points and refined by interleaving, which is the
    # original's in-place strided update without strided writes into the full map
    grid = torch.zeros(n, 1, 1, device=u.device, dtype=dtype)
    k, wibble, pos = 1, 100.0, 0

    def wibbled_mean(total: Tensor) -> Tensor:
        # total / 4 + wibble * U(-wibble, wibble)
        nonlocal pos
        noise = u[:, pos : pos + k * k].view(n, k, k)
        pos += k * k
        return torch.add(total.mul_(0.25), noise, alpha=wibble * wibble)

    while k < mapsize:
        # periodic neighbours of the corner grid: right and below wrap around
        wrap = torch.cat([grid, grid[:, :1]], 1)
        wrap = torch.cat([wrap, wrap[:, :, :1]], 2)
        corners, right, below = wrap[:, :k, :k], wrap[:, :k, 1:], wrap[:, 1:, :k]
        # squares: centre = mean of the four corners
        centres = wibbled_mean(corners + right + below + wrap[:, 1:, 1:])
        # diamonds on the top edges: centres above (wrapping) and below, corners left and right
        above = torch.cat([centres[:, -1:], centres[:, :-1]], 1)
        top = wibbled_mean(centres + above + corners + right)
        # diamonds on the left edges: centres left (wrapping) and right, corners above and below
        left = torch.cat([centres[:, :, -1:], centres[:, :, :-1]], 2)
        side = wibbled_mean(centres + left + corners + below)
        upper = torch.stack([corners, top], 3).view(n, k, 2 * k)
        lower = torch.stack([side, centres], 3).view(n, k, 2 * k)
        grid = torch.stack([upper, lower], 2).view(n, 2 * k, 2 * k)
        k *= 2
        wibble /= wibble_decay
    lo, hi = torch.aminmax(grid.view(n, -1), dim=1)
    lo, hi = lo.view(n, 1, 1), hi.view(n, 1, 1)
    return (grid - lo).div_(hi - lo)


def apply_fog(images: Tensor, plasma: Tensor, strength: float) -> Tensor:
    """Add ``strength`` × a fog map and rescale so the brightest clean value keeps its level.

    ``clip((x + strength * plasma) * max(x) / (max(x) + strength), 0, 1)`` with ``max(x)`` taken per image over
    all channels and pixels, as the original.

    Args:
        images: clean pixels.
        plasma: fog maps in [0, 1], at least as large as the images (the top-left ``H × W`` is used), one per
            image or one for all.
        strength: fog strength (the first severity parameter).

    Returns:
        Foggy pixels, same shape, dtype and device.

    Shape:
        ``(N, 3, H, W)``, plasma ``(N, S, S)`` or ``(S, S)`` with ``S >= H, W`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: fog maps smaller than the images or of the wrong batch size.
    """
    n, _, h, w = images.shape
    if plasma.shape[-2] < h or plasma.shape[-1] < w or (plasma.ndim == 3 and plasma.shape[0] not in (1, n)):
        raise ValueError(f"fog maps of shape {tuple(plasma.shape)} do not cover images of shape {tuple(images.shape)}")
    dtype = work_dtype(images)
    x = images.to(dtype)
    fog_map = plasma[..., :h, :w].to(device=x.device, dtype=dtype)
    fog_map = fog_map.reshape(-1, 1, h, w)
    max_val = x.amax(dim=(1, 2, 3), keepdim=True)
    out = torch.add(x, fog_map, alpha=strength).mul_(max_val / (max_val + strength))
    return out.clamp_(0.0, 1.0).to(images.dtype)


@PERTURBATIONS.register
def fog(
    images: Tensor,
    severity: int,
    *,
    generator: Generators = None,
    profile: str | None = None,
) -> Tensor:
    """Fog: a diamond-square plasma fractal added to the image, then the brightness rescaled.

    Args:
        images: clean pixels.
        severity: 1..5.
        generator: one generator, or one per sample (batch-independent results).
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"`` severity table; default chosen from the image size.

    Returns:
        Foggy pixels in [0, 1], same shape, dtype and device.

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: bad images, severity or profile.

    Note:
        Fidelity: the original generates a ``mapsize``-square fractal (256 for ImageNet, 32 for CIFAR, 64 for
        Tiny-ImageNet) and uses its top-left ``H × W`` corner; here ``mapsize`` is the next power of two of the
        longer image side, which equals the original at 224, 32 and 64 px (``imagecorruptions`` does the same).
        The fractal is computed in float32 instead of float64.
    """
    (strength, decay), _ = setup_corruption("fog", images, severity, profile)
    n, _, h, w = images.shape
    plasma = plasma_fractal(
        n, _next_power_of_two(max(h, w)), decay, generator=generator, device=images.device, dtype=work_dtype(images)
    )
    return apply_fog(images, plasma, strength)
