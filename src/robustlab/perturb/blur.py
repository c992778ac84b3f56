"""Blur corruptions: defocus, glass, motion, zoom and Gaussian blur.

Each corruption has two layers: the registered ``(images, severity)`` function that looks up the benchmark
parameters and draws the random ones, and a public ``apply_*`` core that takes every parameter explicitly (angles,
pixel offsets, zoom factors), so that perturbation sequences (ImageNet-P) can replay it with per-frame parameters.
Random numbers come from ``generator`` through :mod:`robustlab.rng` (drawn on CPU, then moved), one draw per sample
from that sample's generator when a list is given, so CPU and CUDA agree and a sample's output does not depend on
its batch.

Fidelity: the recipes follow the original benchmark code, hendrycks/robustness ``make_imagenet_c.py``,
``make_cifar_c.py`` and ``make_tinyimagenet_c.py`` (whose blur functions differ only in parameters and in glass
blur's loop bounds, which use the image size). Where ``imagecorruptions`` 1.1.2 departs from that code it is named
in the function's docstring. The random streams differ from NumPy's global RNG, so random corruptions match the
reference in distribution, not pixel for pixel. Results are not quantised to uint8 at the end.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from robustlab import rng
from robustlab.perturb._common import setup_corruption, work_dtype
from robustlab.perturb._filters import border_indices, clipped_zoom, filter2d, gaussian_blur2d, motion_blur2d
from robustlab.perturb._registry import PERTURBATIONS

Generators = torch.Generator | Sequence[torch.Generator] | None

__all__ = [
    "apply_defocus_blur",
    "apply_gaussian_blur",
    "apply_glass_blur",
    "apply_motion_blur",
    "apply_zoom_blur",
    "defocus_blur",
    "defocus_kernel",
    "gaussian_blur",
    "glass_blur",
    "glass_blur_offsets",
    "glass_blur_sources",
    "motion_blur",
    "zoom_blur",
]


# --------------------------------------------------------------------------------------------- gaussian blur


def apply_gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """Gaussian blur with standard deviation ``sigma`` (pixels), clipped to [0, 1].

    Equal to ``skimage.filters.gaussian(image, sigma, channel_axis=-1)`` (border ``nearest``, truncate 4) up to
    float32 rounding.

    Shape:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``.
    """
    work = work_dtype(images)
    return gaussian_blur2d(images.to(work), sigma).clamp_(0, 1).to(images.dtype)


@PERTURBATIONS.register
def gaussian_blur(
    images: Tensor,
    severity: int,
    *,
    generator: Generators = None,
    profile: str | None = None,
) -> Tensor:
    """Gaussian blur (a validation corruption, not part of mCE), deterministic.

    Args:
        images: clean pixels in [0, 1].
        severity: 1..5; σ = 1, 2, 3, 4, 6 px (imagenet), .4 .. 1 (cifar), .5 .. 1.5 (tiny).
        generator: unused (deterministic corruption); accepted for a uniform signature.
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"``; default chosen from the image size.

    Returns:
        Blurred pixels in [0, 1], same shape, dtype and device.

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: images not ``(N, 3, H, W)`` float in [0, 1], severity outside 1..5, unknown profile.

    Fidelity: scikit-image ``gaussian`` semantics (border ``nearest``, kernel radius ``int(4σ + 0.5)``), as the
    original; matches it to float32 rounding.
    """
    sigma, _ = setup_corruption("gaussian_blur", images, severity, profile)
    return apply_gaussian_blur(images, float(sigma))


# --------------------------------------------------------------------------------------------- defocus blur


def _cv_gaussian_kernel1d(ksize: int, sigma: float) -> np.ndarray:
    # cv2.getGaussianKernel for sigma > 0: exp(-(i - (ksize-1)/2)^2 / 2σ²), normalised, float64
    x = np.arange(ksize, dtype=np.float64) - (ksize - 1) / 2
    k = np.exp(-0.5 * x**2 / sigma**2)
    return k / k.sum()


def defocus_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The original benchmark's anti-aliased disk kernel (float32).

    An aliased disk ``X² + Y² <= radius²`` on the grid ``arange(-8, 9)`` (or ``arange(-radius, radius + 1)`` for
    radius > 8), normalised to sum 1, then smoothed by OpenCV's ``GaussianBlur`` (3x3, or 5x5 for radius > 8, σ =
    ``alias_blur``, border reflect-101), reproduced here without OpenCV.
    """
    if radius <= 8:
        grid = np.arange(-8, 8 + 1)
        ksize = 3
    else:
        grid = np.arange(-radius, radius + 1)
        ksize = 5
    gx, gy = np.meshgrid(grid, grid)
    disk = np.asarray(gx**2 + gy**2 <= radius**2, dtype=np.float32)
    disk /= np.sum(disk)
    if alias_blur <= 0:
        return disk
    k = _cv_gaussian_kernel1d(ksize, float(alias_blur))
    r = ksize // 2
    n = disk.shape[0]
    idx = border_indices(n, r, r, "mirror").numpy()
    d = disk.astype(np.float64)
    rows = sum(k[i] * d[idx[i : i + n], :] for i in range(ksize))
    out = sum(k[i] * rows[:, idx[i : i + n]] for i in range(ksize))
    return np.asarray(out, dtype=np.float32)


def apply_defocus_blur(images: Tensor, radius: float, alias_blur: float) -> Tensor:
    """Defocus blur: every channel correlated with :func:`defocus_kernel`, border reflect-101, clipped to [0, 1].

    Shape:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``.
    """
    work = work_dtype(images)
    kernel = torch.from_numpy(defocus_kernel(radius, alias_blur))
    return filter2d(images.to(work), kernel, "reflect101").clamp_(0, 1).to(images.dtype)


@PERTURBATIONS.register
def defocus_blur(
    images: Tensor,
    severity: int,
    *,
    generator: Generators = None,
    profile: str | None = None,
) -> Tensor:
    """Defocus blur: a convolution with an anti-aliased disk, deterministic.

    Args:
        images: clean pixels in [0, 1].
        severity: 1..5; (disk radius, anti-alias σ) from the profile's table, e.g. (3, .1) .. (10, .5) at 224 px.
        generator: unused (deterministic corruption); accepted for a uniform signature.
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"``; default chosen from the image size.

    Returns:
        Blurred pixels in [0, 1], same shape, dtype and device.

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: images not ``(N, 3, H, W)`` float in [0, 1], severity outside 1..5, unknown profile.

    Fidelity: the original kernel (``disk``) rebuilt exactly and applied like ``cv2.filter2D`` per channel (border
    reflect-101); large kernels go through an FFT, like OpenCV's own DFT path, so results agree to ~1e-6.
    """
    (radius, alias), _ = setup_corruption("defocus_blur", images, severity, profile)
    return apply_defocus_blur(images, float(radius), float(alias))


# --------------------------------------------------------------------------------------------- motion blur


def apply_motion_blur(images: Tensor, radius: float, sigma: float, angles: Tensor | Sequence[float]) -> Tensor:
    """ImageMagick motion blur with one angle (degrees) per image, clipped to [0, 1].

    Args:
        images: pixels in [0, 1].
        radius: kernel radius; the kernel has ``2 * ceil(radius) + 1`` taps.
        sigma: Gaussian fall-off of the taps.
        angles: ``(N,)`` blur directions in degrees.

    Returns:
        Blurred pixels in [0, 1].

    Shape:
        ``(N, C, H, W)``, angles ``(N,)`` -> ``(N, C, H, W)``.

    Raises:
        ValueError: wrong number of angles, radius or sigma <= 0.
    """
    work = work_dtype(images)
    return motion_blur2d(images.to(work), radius, sigma, angles).clamp_(0, 1).to(images.dtype)


@PERTURBATIONS.register
def motion_blur(
    images: Tensor,
    severity: int,
    *,
    generator: Generators = None,
    profile: str | None = None,
) -> Tensor:
    """Motion blur along a random direction, angle ~ U(-45°, 45°) per image.

    Args:
        images: clean pixels in [0, 1].
        severity: 1..5; (radius, σ) from the profile's table, e.g. (10, 3) .. (20, 15) at 224 px.
        generator: one generator, or one per sample (each draws its own angle).
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"``; default chosen from the image size.

    Returns:
        Blurred pixels in [0, 1], same shape, dtype and device.

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: images not ``(N, 3, H, W)`` float in [0, 1], severity outside 1..5, unknown profile, a
            generator list of the wrong length.

    Fidelity: the original calls ImageMagick's ``MotionBlurImage`` through Wand on a PNG of the image. This is that
    algorithm (taps ``ceil(i·sin θ - .5)``, ``ceil(i·cos θ - .5)``, weights ∝ ``exp(-i²/2σ²)``, edge pixels
    repeated), which ``imagecorruptions`` also re-implements; unlike ``imagecorruptions`` no tap is dropped when an
    offset exceeds the image size (ImageMagick keeps repeating edges), which only matters for images smaller than
    the kernel. ImageMagick's uint8 output is not reproduced (the result stays float).
    """
    (radius, sigma), _ = setup_corruption("motion_blur", images, severity, profile)
    angles = rng.uniform((images.shape[0],), -45.0, 45.0, generator=generator, dtype=torch.float64)
    return apply_motion_blur(images, float(radius), float(sigma), angles)


# --------------------------------------------------------------------------------------------- zoom blur


def apply_zoom_blur(images: Tensor, zooms: Sequence[float] | np.ndarray | Tensor) -> Tensor:
    """Zoom blur: the mean of the image and its centre zooms by each factor in ``zooms``, clipped to [0, 1].

    Each zoom crops the central ``ceil(H / z) x ceil(W / z)`` pixels, enlarges them by ``z`` with linear
    interpolation on SciPy's grid (``scipy.ndimage.zoom(order=1)``: output ``i`` samples input
    ``i * (in - 1) / (out - 1)``, output length ``round(crop * z)``) and trims the result back to the centre
    ``H x W``.

    Args:
        images: pixels in [0, 1].
        zooms: zoom factors >= 1 (the same for the whole batch).

    Returns:
        Blurred pixels in [0, 1].

    Shape:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``.

    Raises:
        ValueError: a zoom factor below 1.
    """
    factors = [float(z) for z in (zooms.tolist() if isinstance(zooms, (Tensor, np.ndarray)) else zooms)]
    if any(z < 1 for z in factors):
        raise ValueError(f"zoom factors must be >= 1, got {factors}")
    work = work_dtype(images)
    x = images.to(work)
    h, w = x.shape[-2:]
    out = x.clone()
    for z in factors:
        out.add_(clipped_zoom(x, z))
    out.div_(len(factors) + 1)
    return out.clamp_(0, 1).to(images.dtype)


@PERTURBATIONS.register
def zoom_blur(
    images: Tensor,
    severity: int,
    *,
    generator: Generators = None,
    profile: str | None = None,
) -> Tensor:
    """Zoom blur: the average of centre zooms, deterministic.

    Args:
        images: clean pixels in [0, 1].
        severity: 1..5; zoom factors ``arange(1, max, step)`` from the profile's table.
        generator: unused (deterministic corruption); accepted for a uniform signature.
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"``; default chosen from the image size.

    Returns:
        Blurred pixels in [0, 1], same shape, dtype and device.

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: images not ``(N, 3, H, W)`` float in [0, 1], severity outside 1..5, unknown profile.

    Fidelity: follows the original ``clipped_zoom``, which trims the enlarged crop back to the image *centre*;
    ``imagecorruptions`` keeps its *top-left* ``H x W`` instead, a shift of up to a pixel or two at some zoom
    factors.
    """
    zooms, _ = setup_corruption("zoom_blur", images, severity, profile)
    return apply_zoom_blur(images, zooms)


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
