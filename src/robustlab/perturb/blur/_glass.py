"""Glass blur: Gaussian blur, then local pixel swaps with random neighbours, then Gaussian blur again.

Fidelity: the recipes follow hendrycks/robustness ``make_imagenet_c.py``, ``make_cifar_c.py`` and
``make_tinyimagenet_c.py``; where ``imagecorruptions`` 1.1.2 departs from that code it is named in the function's
docstring.

The random streams differ from NumPy's global RNG, so glass blur matches the reference in distribution, not
pixel for pixel.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from robustlab import rng
from robustlab.perturb._common import setup_corruption, work_dtype
from robustlab.perturb._filters import gaussian_blur2d
from robustlab.perturb._registry import PERTURBATIONS
from robustlab.rng import Generators

__all__ = ["apply_glass_blur", "glass_blur", "glass_blur_offsets", "glass_blur_sources"]

# --------------------------------------------------------------------------------------------- glass blur


def glass_blur_offsets(
    n: int,
    height: int,
    width: int,
    max_delta: int,
    iterations: int,
    *,
    generator: Generators = None,
) -> Tensor:
    """Random pixel offsets of glass blur: ``(N, iterations, H - 2δ, W - 2δ, 2)`` int64 ``(dx, dy)`` in [-δ, δ).

    Entry ``[n, it, i, j]`` belongs to pixel ``(H - δ - i, W - δ - j)``, i.e. the pixels in the order the original
    visits them (rows, then columns, from bottom-right to top-left). Each sample draws from its own generator
    when a list is given.

    Raises:
        ValueError: a generator list of the wrong length.
    """
    vh, vw = max(0, height - 2 * max_delta), max(0, width - 2 * max_delta)
    return rng.randint(-max_delta, max_delta, (n, iterations, vh, vw, 2), generator=generator)


def _visit_grid(height: int, width: int, max_delta: int, device: torch.device) -> tuple[Tensor, Tensor]:
    # the visited pixels, in visiting order: range(H - δ, δ, -1) x range(W - δ, δ, -1)
    if height - 2 * max_delta <= 0 or width - 2 * max_delta <= 0:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return empty, empty
    ys = torch.arange(height - max_delta, max_delta, -1, device=device)
    xs = torch.arange(width - max_delta, max_delta, -1, device=device)
    return ys, xs


def _copy_pass_sources(height: int, width: int, max_delta: int, offsets: Tensor) -> Tensor:
    """One pass of the original's (copying) shuffle as a source map: pixel p ends with the pass-start value at
    ``src[n, p]`` (flat indices, ``(N, H*W)``).

    When p is visited it copies the *current* value of its neighbour q = p + (dy, dx). q still holds its
    pass-start value unless q was visited earlier in this pass (a later raster position inside the visited
    window), in which case it holds whatever q copied — so p's value is found by following p -> q -> q' ... while
    each next pixel was visited before the current one. All chains are resolved at once by pointer jumping.
    """
    n = offsets.shape[0]
    dev = offsets.device
    offsets = offsets.to(torch.int64)
    hw = height * width
    ys, xs = _visit_grid(height, width, max_delta, dev)
    flat = torch.arange(hw, device=dev).view(1, hw).expand(n, hw)
    if ys.numel() == 0 or xs.numel() == 0:
        return flat.clone()
    p = (ys.view(-1, 1) * width + xs.view(1, -1)).reshape(-1)  # visited pixels (flat), visiting order
    q = ((ys.view(1, -1, 1) + offsets[..., 1]) * width + (xs.view(1, 1, -1) + offsets[..., 0])).reshape(n, -1)
    visited = torch.zeros(hw, dtype=torch.bool, device=dev)
    visited[p] = True
    # a[n, p]: the neighbour p copies from (p itself when not visited)
    a = flat.clone()
    a[:, p] = q
    # follow a(p) only if a(p) was visited earlier than p, i.e. has a larger raster index and lies in the window
    cont = torch.zeros(n, hw, dtype=torch.bool, device=dev)
    cont[:, p] = visited[q] & (q > p.view(1, -1))
    # successor in the chain (roots point at themselves), then pointer jumping to each chain's root
    nxt = torch.where(cont, a, flat)
    while True:
        jumped = nxt.gather(1, nxt)
        if torch.equal(jumped, nxt):
            break
        nxt = jumped
    # a chain ending at root r takes the pass-start value of a(r)
    return a.gather(1, nxt)


def _swap_pass_sources(height: int, width: int, max_delta: int, offsets: Tensor) -> Tensor:
    """One pass of a true swap (what the original meant to do) as a source map; sequential over pixels."""
    n = offsets.shape[0]
    src = np.tile(np.arange(height * width), (n, 1))
    ys, xs = _visit_grid(height, width, max_delta, torch.device("cpu"))
    off = offsets.cpu().numpy()
    rows = np.arange(n)
    for i, y in enumerate(ys.tolist()):
        for j, x in enumerate(xs.tolist()):
            p = y * width + x
            q = (y + off[:, i, j, 1]) * width + (x + off[:, i, j, 0])
            tmp = src[:, p].copy()
            src[:, p] = src[rows, q]
            src[rows, q] = tmp
    return torch.from_numpy(src).to(offsets.device)


def glass_blur_sources(height: int, width: int, max_delta: int, offsets: Tensor, *, swap: bool = False) -> Tensor:
    """Where every pixel's value comes from after all shuffle passes: ``(N, H*W)`` flat source indices.

    Args:
        height: image height.
        width: image width.
        max_delta: δ, the largest offset.
        offsets: ``(N, iterations, H - 2δ, W - 2δ, 2)`` from :func:`glass_blur_offsets`.
        swap: exchange the two pixels (a permutation) instead of the original's copy.

    Shape:
        offsets ``(N, I, H - 2δ, W - 2δ, 2)`` -> ``(N, H*W)``.
    """
    n = offsets.shape[0]
    src = torch.arange(height * width, device=offsets.device).view(1, -1).expand(n, -1)
    one_pass = _swap_pass_sources if swap else _copy_pass_sources
    for it in range(offsets.shape[1]):
        # after this pass, p holds the previous state's value at pass_src[p], i.e. the original at src[pass_src[p]]
        src = src.gather(1, one_pass(height, width, max_delta, offsets[:, it]))
    return src


def apply_glass_blur(
    images: Tensor,
    sigma: float,
    max_delta: int,
    offsets: Tensor,
    *,
    swap: bool = False,
) -> Tensor:
    """Glass blur: Gaussian blur, uint8 quantisation, local pixel shuffle by ``offsets``, Gaussian blur again.

    Args:
        images: pixels in [0, 1].
        sigma: σ of both Gaussian blurs (scikit-image semantics).
        max_delta: δ; pixels ``δ+1 .. H-δ`` (and likewise columns) are visited.
        offsets: ``(N, iterations, H - 2δ, W - 2δ, 2)`` integer ``(dx, dy)`` in [-δ, δ) per visited pixel and
            pass, from :func:`glass_blur_offsets`.
        swap: exchange pixel and neighbour (a true swap) instead of the original's copy; sequential, slow.

    Returns:
        Glass-blurred pixels in [0, 1].

    Shape:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``.

    Raises:
        ValueError: offsets of the wrong shape, or offsets that leave the image.
    """
    n, c, h, w = images.shape
    vh, vw = max(0, h - 2 * max_delta), max(0, w - 2 * max_delta)
    if offsets.ndim != 5 or offsets.shape[0] != n or tuple(offsets.shape[2:]) != (vh, vw, 2):
        raise ValueError(
            f"offsets must have shape (N={n}, iterations, {vh}, {vw}, 2) for {h}x{w} images and max_delta="
            f"{max_delta}, got {tuple(offsets.shape)}"
        )
    if offsets.numel() and (int(offsets.min()) < -max_delta or int(offsets.max()) > max_delta - 1):
        # randint(-δ, δ) never draws +δ, and +δ would leave the image at the last visited row/column
        raise ValueError(f"offsets must lie in [-{max_delta}, {max_delta - 1}], like randint(-δ, δ)")
    offsets = offsets.to(images.device)
    work = work_dtype(images)
    x = gaussian_blur2d(images.to(work), sigma)
    # the original stores the first blur as np.uint8(x * 255): truncation, not rounding
    x = torch.floor((x * 255).clamp_(0, 255)) / 255
    src = glass_blur_sources(h, w, max_delta, offsets, swap=swap)
    x = x.reshape(n, c, h * w).gather(2, src.unsqueeze(1).expand(n, c, h * w)).reshape(n, c, h, w)
    return gaussian_blur2d(x, sigma).clamp_(0, 1).to(images.dtype)


@PERTURBATIONS.register
def glass_blur(
    images: Tensor,
    severity: int,
    *,
    generator: Generators = None,
    profile: str | None = None,
    swap: bool = False,
) -> Tensor:
    """Glass blur: pixels locally shuffled between two Gaussian blurs.

    Args:
        images: clean pixels in [0, 1].
        severity: 1..5; (σ, max shift δ, passes) from the profile's table, e.g. (.7, 1, 2) .. (1.5, 4, 2) at 224 px.
        generator: one generator, or one per sample (each draws its own offsets).
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"``; default chosen from the image size.
        swap: exchange each pixel with its neighbour (what the original meant) instead of copying the neighbour
            (what it does). Runs a sequential loop over pixels: far slower.

    Returns:
        Blurred pixels in [0, 1], same shape, dtype and device.

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: images not ``(N, 3, H, W)`` float in [0, 1], severity outside 1..5, unknown profile, a
            generator list of the wrong length.

    Fidelity: reproduces the original exactly up to the random stream: blur, ``np.uint8`` truncation, ``passes``
    sweeps from bottom-right to top-left over rows/columns ``δ+1 .. size-δ`` in which each pixel takes the current
    value of the pixel at offset ``(dy, dx)`` ∈ [-δ, δ)² (``randint`` excludes +δ) — the original's tuple
    "swap" of NumPy views copies and leaves the neighbour unchanged — then blur again. The sequential sweep is
    evaluated in parallel by resolving copy chains with pointer jumping.
    """
    (sigma, delta, iterations), _ = setup_corruption("glass_blur", images, severity, profile)
    n, _, h, w = images.shape
    offsets = glass_blur_offsets(n, h, w, int(delta), int(iterations), generator=generator)
    return apply_glass_blur(images, float(sigma), int(delta), offsets, swap=swap)
