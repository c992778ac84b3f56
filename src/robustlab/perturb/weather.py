"""Weather corruptions of the common-corruption benchmarks: snow, frost, fog and spatter.

Each corruption is split in two, as kornia does: the registered function (``snow``, ``frost``, ``fog``,
``spatter``) looks up the severity parameters and draws the random inputs from the per-sample generators; the public
``apply_*`` core takes those inputs explicitly, so perturbation sequences (ImageNet-P) can replay them with
per-frame parameters. Every image operation runs batched on the images' device.

Source of the recipes: hendrycks/robustness, ``ImageNet-C/create_c/make_imagenet_c.py`` (224 px),
``make_cifar_c.py`` (32 px) and ``make_tinyimagenet_c.py`` (64 px). Where ``imagecorruptions`` 1.1.2 departs from
them, the original is followed and the difference is noted in the function's docstring.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab import rng
from robustlab.perturb._common import setup_corruption, work_dtype
from robustlab.perturb._filters import clipped_zoom, gaussian_blur2d, motion_blur2d
from robustlab.perturb._registry import PERTURBATIONS

__all__ = [
    "apply_fog",
    "apply_frost",
    "apply_snow",
    "apply_spatter",
    "fog",
    "frost",
    "frost_overlays",
    "plasma_fractal",
    "snow",
    "spatter",
]

Generators = torch.Generator | Sequence[torch.Generator] | None

# ITU-R BT.601 luma, as cv2.cvtColor(..., COLOR_RGB2GRAY) on float images
_LUMA = (0.299, 0.587, 0.114)


def _gray(images: Tensor) -> Tensor:
    r, g, b = images.unbind(1)
    return torch.mul(r, _LUMA[0]).add_(g, alpha=_LUMA[1]).add_(b, alpha=_LUMA[2]).unsqueeze(1)


# --------------------------------------------------------------------------------------------------------------------
# fog


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


# --------------------------------------------------------------------------------------------------------------------
# frost

_FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
# The original draws np.random.randint(5): only the first five textures are ever used.
_FROST_CHOICES = 5
# Texture scale per profile: the ImageNet code crops the textures as they are; make_cifar_c.py and
# make_tinyimagenet_c.py first shrink them with cv2.resize(fx=fy=0.2 / 0.3, INTER_LINEAR).
_FROST_SCALE = {"imagenet": 1.0, "cifar": 0.2, "tiny": 0.3}


@functools.lru_cache(maxsize=1)
def _frost_textures_uint8() -> tuple[Tensor, ...]:
    """The six frost textures as uint8 RGB (3, H, W) CPU tensors (alpha dropped, as cv2.imread does)."""
    from PIL import Image

    folder = importlib.resources.files("robustlab") / "assets" / "frost"
    out = []
    for name in _FROST_FILES:
        with (folder / name).open("rb") as f, Image.open(f) as im:
            out.append(torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).contiguous())
    return tuple(out)


def _resize_linear_cv2(texture: Tensor, out_h: int, out_w: int, scale_y: float, scale_x: float) -> Tensor:
    """``cv2.resize(..., INTER_LINEAR)`` of a uint8 (3, H, W) texture: half-pixel centres, no anti-aliasing.

    ``scale_*`` is the source step per output pixel; borders clamp the sample position as OpenCV does. The
    arithmetic is OpenCV's uint8 fixed-point path (11-bit weights, rows first, then its SIMD column step's
    shifts), which reproduces ``cv2.resize`` bit for bit on the frost textures.
    """

    def taps(n_out: int, n_in: int, scale: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        pos = (torch.arange(n_out, dtype=torch.float64) + 0.5) * scale - 0.5
        pos = pos.to(torch.float32).to(torch.float64)  # OpenCV keeps the position in float
        i0 = pos.floor()
        frac = pos - i0
        i0 = i0.long()
        frac = torch.where(i0 < 0, torch.zeros_like(frac), frac)
        i0 = i0.clamp(min=0)
        last = i0 >= n_in - 1
        frac = torch.where(last, torch.zeros_like(frac), frac)
        i0 = torch.where(last, torch.full_like(i0, n_in - 1), i0)
        i1 = (i0 + 1).clamp(max=n_in - 1)
        frac = frac.to(torch.float32)
        # both weights are rounded separately, as OpenCV does (they need not sum to 2048)
        return i0, i1, torch.round((1 - frac) * 2048).long(), torch.round(frac * 2048).long()

    y0, y1, wy0, wy1 = taps(out_h, texture.shape[1], scale_y)
    x0, x1, wx0, wx1 = taps(out_w, texture.shape[2], scale_x)
    t = texture.long()
    rows = t[:, :, x0] * wx0 + t[:, :, x1] * wx1  # (3, H, out_w), scale 2^11
    top = ((rows[:, y0] >> 4) * wy0.view(1, -1, 1)) >> 16
    bottom = ((rows[:, y1] >> 4) * wy1.view(1, -1, 1)) >> 16
    return ((top + bottom + 2) >> 2).clamp(0, 255).to(torch.uint8)


@functools.lru_cache(maxsize=16)
def _frost_bank(profile: str, height: int, width: int, device: str) -> tuple[Tensor, Tensor]:
    """Textures for one profile and image size, padded into one (T, 3, Hmax, Wmax) float tensor, and their sizes."""
    scale = _FROST_SCALE[profile]
    textures = []
    for tex in _frost_textures_uint8()[:_FROST_CHOICES]:
        th, tw = tex.shape[-2:]
        if scale != 1.0:
            nh, nw = round(th * scale), round(tw * scale)
            tex = _resize_linear_cv2(tex, nh, nw, 1.0 / scale, 1.0 / scale)
            th, tw = nh, nw
        # images larger than the texture (only at sizes the benchmarks never used): enlarge it until a crop fits,
        # with at least one pixel of play so the random offset exists
        grow = max(1.0, (height + 1) / th, (width + 1) / tw)
        if grow > 1.0:
            nh, nw = math.ceil(th * grow), math.ceil(tw * grow)
            tex = _resize_linear_cv2(tex, nh, nw, th / nh, tw / nw)
            th, tw = nh, nw
        textures.append(tex)
    hmax = max(t.shape[1] for t in textures)
    wmax = max(t.shape[2] for t in textures)
    # channels last, so that one flat pixel index per output pixel gathers all three channels
    bank = torch.zeros(len(textures), hmax, wmax, 3, dtype=torch.float32)
    for i, t in enumerate(textures):
        bank[i, : t.shape[1], : t.shape[2]] = t.permute(1, 2, 0).float() / 255
    sizes = torch.tensor([[t.shape[1], t.shape[2]] for t in textures])
    return bank.view(-1, 3).to(device), sizes


def frost_overlays(
    n: int,
    height: int,
    width: int,
    *,
    profile: str = "imagenet",
    generator: Generators = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Random crops of the frost textures: per sample a texture (one of the first five) and a crop offset.

    Each sample draws ``randint(5)``, then the row and column offsets ``randint(0, texture_side - image_side)``,
    from its own generator; the crops are then gathered in one indexing operation.

    Args:
        n: number of overlays.
        height: overlay height (the image height).
        width: overlay width.
        profile: texture scale of that benchmark: ``imagenet`` (as shipped), ``cifar`` (× 0.2), ``tiny`` (× 0.3).
        generator: one generator, or one per sample.
        device: device of the result.

    Returns:
        RGB frost overlays in [0, 1], float32.

    Shape:
        ``(n, 3, height, width)``.

    Raises:
        ValueError: unknown profile or a generator list of the wrong length.
    """
    if profile not in _FROST_SCALE:
        raise ValueError(f"unknown frost profile {profile!r}; expected one of {sorted(_FROST_SCALE)}")
    return _frost_crops(n, height, width, profile, generator, device).permute(0, 3, 1, 2).contiguous()


def _frost_crops(
    n: int, height: int, width: int, profile: str, generator: Generators, device: torch.device | str | None
) -> Tensor:
    """Frost crops in channels-last layout ``(n, H, W, 3)``: the random draws, then one gather."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    bank, sizes = _frost_bank(profile, height, width, str(dev))
    hmax, wmax = int(sizes[:, 0].max()), int(sizes[:, 1].max())
    starts = []
    for g in rng.generator_list(generator, n):
        t = int(torch.randint(_FROST_CHOICES, (1,), generator=g))
        top = int(torch.randint(0, int(sizes[t, 0]) - height, (1,), generator=g))
        left = int(torch.randint(0, int(sizes[t, 1]) - width, (1,), generator=g))
        starts.append((t * hmax + top) * wmax + left)
    window = torch.arange(height, device=dev).view(height, 1) * wmax + torch.arange(width, device=dev)
    index = torch.tensor(starts, device=dev).view(n, 1, 1) + window
    return bank.index_select(0, index.view(-1)).view(n, height, width, 3)


def apply_frost(images: Tensor, overlays: Tensor, image_weight: float, frost_weight: float) -> Tensor:
    """Blend frost overlays into the images: ``clip(image_weight * x + frost_weight * overlay, 0, 1)``.

    Args:
        images: clean pixels.
        overlays: frost crops in [0, 1] (see :func:`frost_overlays`).
        image_weight: weight of the image (first severity parameter).
        frost_weight: weight of the frost (second severity parameter).

    Returns:
        Frosted pixels, same shape, dtype and device.

    Shape:
        ``(N, 3, H, W)``, overlays ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: overlays of another shape.
    """
    if overlays.shape != images.shape:
        raise ValueError(f"frost overlays of shape {tuple(overlays.shape)} do not match images {tuple(images.shape)}")
    dtype = work_dtype(images)
    out = torch.mul(images.to(dtype), image_weight)
    out.add_(overlays.to(device=images.device, dtype=dtype), alpha=frost_weight)
    return out.clamp_(0.0, 1.0).to(images.dtype)


@PERTURBATIONS.register
def frost(
    images: Tensor,
    severity: int,
    *,
    generator: Generators = None,
    profile: str | None = None,
) -> Tensor:
    """Frost: a random crop of a frost photograph blended over the image.

    Args:
        images: clean pixels.
        severity: 1..5.
        generator: one generator, or one per sample (batch-independent results).
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"`` severity table; default chosen from the image size.

    Returns:
        Frosted pixels in [0, 1], same shape, dtype and device.

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: bad images, severity or profile.

    Note:
        Fidelity: as the original, the texture is one of the first five (``randint(5)``; ``frost6.jpg`` is never
        drawn), the crop offset is uniform, and the textures are cropped as shipped for ImageNet and shrunk with
        OpenCV's bilinear resize by 0.2 (CIFAR) or 0.3 (Tiny-ImageNet) first; the original's BGR read is followed
        by a BGR->RGB flip, so the overlay is the texture in RGB. ``imagecorruptions`` instead enlarges every
        texture by 1.1 (bicubic) and uses ImageNet weights at every size. For image sizes where the scaled texture
        is too small to crop (none of the benchmark sizes), the texture is enlarged just enough.
    """
    (image_weight, frost_weight), prof = setup_corruption("frost", images, severity, profile)
    n, _, h, w = images.shape
    # channels-last crops as a permuted view: apply_frost reads them without a layout copy
    overlays = _frost_crops(n, h, w, prof, generator, images.device).permute(0, 3, 1, 2)
    return apply_frost(images, overlays, image_weight, frost_weight)


# --------------------------------------------------------------------------------------------------------------------
# snow


def apply_snow(
    images: Tensor,
    layer: Tensor,
    *,
    zoom: float,
    threshold: float,
    radius: float,
    sigma: float,
    angles: Tensor | Sequence[float],
    blend: float,
) -> Tensor:
    """Snow from a raw noise layer: zoom, threshold, motion-blur, then add it (and its 180° turn) to a paled image.

    Steps of the original: the layer is zoomed into (``clipped_zoom``), values under ``threshold`` set to 0,
    clipped to [0, 1] and stored as uint8 (truncation), motion-blurred (ImageMagick ``MotionBlurImage``: radius,
    sigma, one angle per image) and stored as uint8 again (rounding). The image becomes
    ``blend * x + (1 - blend) * max(x, 1.5 * gray(x) + 0.5)``, and ``clip(x + snow + rot180(snow), 0, 1)``.

    Args:
        images: clean pixels.
        layer: raw snow noise, e.g. ``N(mean, std)`` per pixel (first two severity parameters).
        zoom: zoom factor (third parameter).
        threshold: flakes below this value vanish (fourth parameter).
        radius: motion-blur radius in pixels (fifth parameter).
        sigma: motion-blur Gaussian fall-off (sixth parameter).
        angles: one blur angle in degrees per image (the benchmark draws U(-135, -45)).
        blend: weight of the original image against its paled version (seventh parameter).

    Returns:
        Snowy pixels, same shape, dtype and device.

    Shape:
        ``(N, 3, H, W)``, layer ``(N, H, W)``, angles ``(N,)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: a layer of the wrong shape, ``zoom < 1`` or the wrong number of angles.
    """
    n, _, h, w = images.shape
    if tuple(layer.shape) != (n, h, w):
        raise ValueError(f"snow layer must have shape {(n, h, w)}, got {tuple(layer.shape)}")
    if not zoom >= 1:
        raise ValueError(f"snow zoom must be >= 1 (it zooms into the layer), got {zoom}")
    dtype = work_dtype(images)
    x = images.to(dtype)
    flakes = clipped_zoom(layer.to(device=x.device, dtype=dtype).unsqueeze(1), zoom)
    flakes = torch.where(flakes < threshold, torch.zeros_like(flakes), flakes).clamp_(0.0, 1.0)
    flakes = torch.floor(flakes * 255) / 255  # uint8 PNG handed to ImageMagick
    flakes = motion_blur2d(flakes, radius, sigma, angles)
    flakes = torch.round(flakes * 255) / 255  # 8-bit PNG read back
    pale = torch.maximum(x, _gray(x).mul_(1.5).add_(0.5))
    out = pale.lerp_(x, blend)  # blend * x + (1 - blend) * pale
    out.add_(flakes + flakes.flip(-2, -1))
    return out.clamp_(0.0, 1.0).to(images.dtype)


@PERTURBATIONS.register
def snow(
    images: Tensor,
    severity: int,
    *,
    generator: Generators = None,
    profile: str | None = None,
) -> Tensor:
    """Snow: thresholded, zoomed Gaussian noise streaked by a motion blur, over a paled image.

    Args:
        images: clean pixels.
        severity: 1..5.
        generator: one generator, or one per sample (batch-independent results).
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"`` severity table; default chosen from the image size.

    Returns:
        Snowy pixels in [0, 1], same shape, dtype and device.

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: bad images, severity or profile.

    Note:
        Fidelity: the original blurs the snow layer with ImageMagick's motion blur through Wand;
        ``imagecorruptions`` re-implements that blur in NumPy with the same taps, and so does this batched version
        (:func:`robustlab.perturb._filters.motion_blur2d`). Following the original rather than
        ``imagecorruptions``: the layer is truncated to uint8 before the blur (the original saves it as an 8-bit
        PNG), and the zoomed layer is trimmed around its centre (``imagecorruptions`` keeps the top-left corner).
        Each sample draws its noise layer, then its angle ~ U(-135°, -45°), from its own generator; the noise is
        float32 rather than float64.
    """
    (mean, std, zoom, threshold, radius, sigma, blend), _ = setup_corruption("snow", images, severity, profile)
    n, _, h, w = images.shape
    dtype = work_dtype(images)
    # each sample draws its noise layer, then its angle, from its own generator
    layer = mean + std * rng.randn((n, h, w), generator=generator, device=images.device, dtype=dtype)
    angles = rng.uniform((n,), -135.0, -45.0, generator=generator)
    return apply_snow(
        images, layer, zoom=zoom, threshold=threshold, radius=radius, sigma=sigma, angles=angles, blend=blend
    )


# --------------------------------------------------------------------------------------------------------------------
# spatter: the water branch's OpenCV steps, batched and integer-exact

# cv2.Canny's tan(22.5°) in Q15 fixed point
_TG22 = int(0.4142135623730950488016887242097 * (1 << 15) + 0.5)
# cv2.distanceTransform(DIST_L2, 5): chamfer weights 1, 1.4f, 2.1969f for straight, diagonal and knight moves,
# in OpenCV's Q16 fixed point
_DIST_SHIFT = 16
_CHAMFER = tuple(round(float(np.float32(v)) * (1 << _DIST_SHIFT)) for v in (1.0, 1.4, 2.1969))
_DIST_CAP = 20  # cv2.threshold(dist, 20, 20, THRESH_TRUNC)
# the emboss-like kernel of the water branch (cv2.filter2D correlates, no flip)
_WATER_KERNEL = ((-2, -1, 0), (-1, 1, 1), (0, 1, 2))
# water is pale turquoise, mud brown; the original adds these in the image's own (RGB) channel order
_WATER_COLOR = (175 / 255, 238 / 255, 238 / 255)
_MUD_COLOR = (63 / 255, 42 / 255, 20 / 255)


def _pad1(x: Tensor, mode: str) -> Tensor:
    """Pad the last two axes by one pixel: ``zero``, ``nearest`` (replicate) or ``mirror`` (OpenCV reflect-101)."""
    h, w = x.shape[-2:]
    if mode == "zero":
        return F.pad(x, (1, 1, 1, 1))
    if mode == "nearest":
        rows = (x[..., :1, :], x, x[..., h - 1 :, :])
    else:
        rows = (x[..., 1:2, :], x, x[..., h - 2 : h - 1, :])
    x = torch.cat(rows, -2)
    cols = (x[..., :1], x, x[..., w - 1 :]) if mode == "nearest" else (x[..., 1:2], x, x[..., w - 2 : w - 1])
    return torch.cat(cols, -1)


def _box3_sum(x: Tensor) -> Tensor:
    """Sum over each 3 × 3 window with OpenCV's default border (reflect-101), computed separably."""
    p = _pad1(x, "mirror")
    rows = p[..., :-2, :] + p[..., 1:-1, :] + p[..., 2:, :]
    return rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]


def _hysteresis(strong: Tensor, weak: Tensor) -> Tensor:
    """Keep the weak pixels 8-connected (through weak pixels) to a strong one; ``weak`` includes ``strong``.

    Only the weak-but-not-strong pixels are visited, as a flat index list, until no pixel joins (the batch
    converges together); they are few, so this costs far less than dilating the whole map.
    """
    n, h, w = strong.shape
    wp = w + 2
    edges = F.pad(strong, (1, 1, 1, 1)).reshape(-1)
    cand = F.pad(weak & ~strong, (1, 1, 1, 1)).reshape(-1).nonzero().squeeze(1)
    if cand.numel():
        steps = torch.tensor([-wp - 1, -wp, -wp + 1, -1, 1, wp - 1, wp, wp + 1], device=strong.device)
        neighbours = cand.unsqueeze(1) + steps
        while cand.numel():
            join = edges[neighbours].any(1)
            if not bool(join.any()):
                break
            edges[cand[join]] = True
            cand, neighbours = cand[~join], neighbours[~join]
    return edges.view(n, h + 2, wp)[:, 1:-1, 1:-1]


def _canny(gray: Tensor, low: int, high: int) -> Tensor:
    """``cv2.Canny(gray, low, high)`` (aperture 3, L1 gradient) of uint8-valued int32 images ``(N, H, W)``.

    Sobel with replicated borders, non-maximum suppression with OpenCV's fixed-point sector test and tie rules
    (zero magnitude outside the image), then hysteresis: weak candidates 8-connected to strong ones.
    """
    p = _pad1(gray, "nearest")
    # separable Sobel: [1, 2, 1] smoothing across the [-1, 0, 1] difference
    gx = p[..., 2:] - p[..., :-2]
    dx = gx[..., :-2, :] + gx[..., 2:, :] + 2 * gx[..., 1:-1, :]
    gy = p[..., 2:, :] - p[..., :-2, :]
    dy = gy[..., :-2] + gy[..., 2:] + 2 * gy[..., 1:-1]
    mag = dx.abs() + dy.abs()
    # OpenCV's sector test in Q15: tan(22.5°) and tan(67.5°) = tan(22.5°) + 2
    ax, ay = dx.abs().to(torch.int32), dy.abs().to(torch.int32) << 15
    tg22x = ax * _TG22
    horizontal = ay < tg22x
    vertical = ay > tg22x + (ax << 16)
    m = F.pad(mag, (1, 1, 1, 1))  # OpenCV's magnitude buffer has zero borders
    h, w = mag.shape[-2:]

    def at(dy_: int, dx_: int) -> Tensor:
        return m[..., 1 + dy_ : 1 + dy_ + h, 1 + dx_ : 1 + dx_ + w]

    keep = torch.where(
        horizontal,
        (mag > at(0, -1)) & (mag >= at(0, 1)),
        torch.where(
            vertical,
            (mag > at(-1, 0)) & (mag >= at(1, 0)),
            torch.where((dx ^ dy) >= 0, (mag > at(-1, -1)) & (mag > at(1, 1)), (mag > at(-1, 1)) & (mag > at(1, -1))),
        ),
    )
    weak = keep & (mag > low)
    return _hysteresis(weak & (mag > high), weak)


def _chamfer_distance(edges: Tensor) -> Tensor:
    """``min(cv2.distanceTransform(255 - edges, DIST_L2, 5), 20)`` in Q16 fixed point (int32), batched.

    OpenCV's own two-pass raster algorithm (5 × 5 mask, weights 1, 1.4, 2.1969 in Q16), one image row at a time
    for the whole batch: the terms from the two previous rows are vectorised, and the sequential neighbour
    recurrence along the row, ``d[x] = min(t[x], d[x - 1] + 1)``, is a cumulative minimum of ``t[x'] - x'``
    (exact in integers). The backward pass is the forward pass on the map turned by 180°. Outside the image
    counts as infinitely far, as OpenCV's border does; values above the cap are clipped during the passes (they
    can never lead back under it). Equal to OpenCV without Intel IPP; OpenCV's x86 wheels use IPP's float32
    variant, which differs by < 1e-4 px.
    """
    n, h, w = edges.shape
    a, b, c = _CHAMFER
    cap = _DIST_CAP << _DIST_SHIFT
    far = cap + 1
    dev = edges.device
    ramp = torch.arange(w, device=dev, dtype=torch.int32) * a
    # the forward pass starts from 0 on edge pixels and "far" elsewhere
    seed = torch.where(edges, 0, far).to(torch.int32)
    d = torch.full((n, h + 4, w + 4), far, dtype=torch.int32, device=dev)
    for _ in range(2):
        near2 = near1 = torch.full((n, w), far, dtype=torch.int32, device=dev)
        for y in range(h):
            prev = d[:, y + 1]
            # knight moves from two rows back (cached) and one row back, diagonal and straight moves
            t = torch.minimum(near2, torch.minimum(prev[:, 0:w], prev[:, 4 : w + 4])).add_(c)
            t = torch.minimum(t, near1 + b)
            t = torch.minimum(t, prev[:, 2 : w + 2] + a)
            cur = d[:, y + 2, 2 : w + 2]
            t = torch.minimum(t, seed[:, y])
            cur.copy_(torch.cummin(t.sub_(ramp), dim=1).values.add_(ramp))
            row = d[:, y + 2]
            near2, near1 = near1, torch.minimum(row[:, 1 : w + 1], row[:, 3 : w + 3])
        # backward pass = forward pass on the turned map, seeded with the forward distances
        seed = d[:, 2 : h + 2, 2 : w + 2].flip(1, 2)
        d = torch.full_like(d, far)
    return seed.clamp(max=cap)  # turned back by the second flip


def _equalize_hist(img: Tensor) -> Tensor:
    """``cv2.equalizeHist`` of each uint8-valued int64 image ``(N, H, W)`` (float32 LUT scale, rounded)."""
    n = img.shape[0]
    flat = img.reshape(n, -1)
    total = flat.shape[1]
    hist = torch.zeros(n, 256, dtype=torch.int64, device=img.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat))
    first = (hist > 0).to(torch.int64).argmax(1, keepdim=True)  # lowest occupied level
    cum = hist.cumsum(1)
    base = cum.gather(1, first)
    scale = 255.0 / (total - hist.gather(1, first)).to(torch.float32)
    lut = torch.round((cum - base).to(torch.float32) * scale).clamp_(0, 255).to(torch.int64)
    # a constant image stays as it is (OpenCV fills it with its only level)
    constant = hist.gather(1, first) == total
    lut = torch.where(constant, torch.arange(256, device=img.device).expand(n, 256), lut)
    return lut.gather(1, flat).view_as(img)


def _water_mask(liquid_u8: Tensor) -> Tensor:
    """The water branch's distance-shaded mask ``liquid * dist`` (float32, un-normalised) from the uint8 layer.

    ``dist = blur3(filter2D(equalizeHist(uint8(blur3(min(distanceTransform(255 - Canny(liquid, 50, 150)), 20))))))``
    with OpenCV's rounding at every uint8 step.
    """
    edges = _canny(liquid_u8, 50, 150)
    dist = _chamfer_distance(edges)
    # cv2.blur on float32 (sums in float64, times 1/9) then astype(uint8), i.e. float32(S * 2^-16 / 9) truncated;
    # for the integer Q16 sums S here that is exactly S // (9 * 2^16) (checked over the whole range)
    dist8 = torch.div(_box3_sum(dist), 9 << _DIST_SHIFT, rounding_mode="floor")
    dist8 = _equalize_hist(dist8.to(torch.int64)).to(torch.int16)
    # cv2.filter2D(CV_8U) with the emboss kernel (a correlation), saturated to 0..255
    p = _pad1(dist8, "mirror")
    h, w = dist8.shape[-2:]
    emboss = torch.zeros_like(dist8)
    for i, row in enumerate(_WATER_KERNEL):
        for j, weight in enumerate(row):
            if weight:
                emboss.add_(p[..., i : i + h, j : j + w], alpha=weight)
    emboss.clamp_(0, 255)
    # the uint8 box blur rounds: round(S / 9) = (S + 4) // 9 for integers (never a tie)
    dist8 = torch.div(_box3_sum(emboss).add_(4), 9, rounding_mode="floor")
    return liquid_u8.to(torch.float32).mul_(dist8)


def apply_spatter(
    images: Tensor,
    layer: Tensor,
    *,
    sigma: float,
    threshold: float,
    intensity: float,
    mud: bool,
) -> Tensor:
    """Spatter from a raw liquid layer: blur and threshold it, then add water drops or cover with mud.

    The layer is Gaussian-blurred (``sigma``, scikit-image defaults) and values under ``threshold`` set to 0.
    Water (``mud=False``): the layer as uint8 is shaded by a distance-to-edge map (Canny edges, 5 × 5 chamfer
    distance capped at 20, box blur, histogram equalisation, an emboss kernel, box blur), normalised to a maximum
    of ``intensity`` and added in pale turquoise. Mud: the drop mask (layer above ``threshold``) is blurred with
    σ = ``intensity``, kept where >= 0.8, and the image there is mixed towards brown.

    Args:
        images: clean pixels.
        layer: raw liquid noise, e.g. ``N(mean, std)`` per pixel (first two severity parameters).
        sigma: blur of the liquid layer (third parameter).
        threshold: drop threshold (fourth parameter).
        intensity: water strength or mud blur σ (fifth parameter).
        mud: mud instead of water (sixth parameter = 1).

    Returns:
        Spattered pixels, same shape, dtype and device.

    Shape:
        ``(N, 3, H, W)``, layer ``(N, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: a layer of the wrong shape.
    """
    n, _, h, w = images.shape
    if tuple(layer.shape) != (n, h, w):
        raise ValueError(f"spatter layer must have shape {(n, h, w)}, got {tuple(layer.shape)}")
    dtype = work_dtype(images)
    x = images.to(dtype)
    # The thresholds below must not flip with the batch size: CPU convolutions are batch-invariant in float32;
    # elsewhere (cuDNN may pick TF32 or batch-dependent algorithms) the blur runs in float64, as the original's.
    blur_dtype = torch.float32 if x.device.type == "cpu" else torch.float64
    liquid = gaussian_blur2d(layer.to(device=x.device, dtype=blur_dtype), sigma)
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    if not mud:
        liquid_u8 = liquid.mul_(255).clamp_(0, 255).to(torch.int16)  # astype(uint8) truncates
        m = _water_mask(liquid_u8)
        peak = m.amax(dim=(1, 2), keepdim=True)
        # a layer without any drop gives 0/0 in the original; here it leaves the image unchanged
        m = m.mul_(torch.where(peak > 0, intensity / peak.clamp(min=1e-12), torch.zeros_like(peak)))
        color = torch.tensor(_WATER_COLOR, dtype=dtype, device=x.device).view(1, 3, 1, 1)
        out = torch.addcmul(x, m.unsqueeze(1).to(dtype), color)
    else:
        drops = (liquid > threshold).to(blur_dtype)
        m = gaussian_blur2d(drops, intensity)
        m = torch.where(m < 0.8, torch.zeros_like(m), m).unsqueeze(1).to(dtype)
        color = torch.tensor(_MUD_COLOR, dtype=dtype, device=x.device).view(1, 3, 1, 1)
        out = torch.addcmul(x, m, color - x)  # x * (1 - m) + color * m
    return out.clamp_(0.0, 1.0).to(images.dtype)


@PERTURBATIONS.register
def spatter(
    images: Tensor,
    severity: int,
    *,
    generator: Generators = None,
    profile: str | None = None,
) -> Tensor:
    """Spatter: water drops (severities 1-3) or mud splashes (4-5) from a thresholded, blurred noise layer.

    Args:
        images: clean pixels.
        severity: 1..5.
        generator: one generator, or one per sample (batch-independent results).
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"`` severity table; default chosen from the image size.

    Returns:
        Spattered pixels in [0, 1], same shape, dtype and device.

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: bad images, severity or profile.

    Note:
        Fidelity: the water branch's OpenCV steps (Canny, 5 × 5 chamfer distance transform, truncation, box
        blurs, ``equalizeHist``, ``filter2D`` with uint8 saturation) are re-implemented batched in integer
        arithmetic and give OpenCV's exact output for the same uint8 liquid layer (OpenCV's x86 wheels route
        the distance transform through Intel IPP, a float32 variant that changes about one pixel in a million
        of the mask, by < 0.4 % of its range). The liquid noise is float32 and blurred in float32 on CPU, float64
        on other devices (the original: float64). A layer with no drop at all, where the original divides 0 by
        0, leaves the image unchanged. The colours are added in RGB order exactly as the original does (its
        "BGR" colour tuples land on the RGB image unchanged).
    """
    (mean, std, sigma, threshold, intensity, mode), _ = setup_corruption("spatter", images, severity, profile)
    n, _, h, w = images.shape
    layer = mean + std * rng.randn((n, h, w), generator=generator, device=images.device, dtype=torch.float32)
    return apply_spatter(images, layer, sigma=sigma, threshold=threshold, intensity=intensity, mud=bool(mode))
