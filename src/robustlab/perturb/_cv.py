"""OpenCV operations the original corruption scripts call, reimplemented batched in torch and checked against
OpenCV: grey conversion, ``cv2.resize`` (INTER_LINEAR, uint8 fixed point), ``cv2.Canny``, ``cv2.distanceTransform``
(L2, 5 × 5 chamfer mask) and ``cv2.equalizeHist``, with the padding and box sums they need.

Integer-exact where OpenCV works in integers, so a corruption built on them reproduces the original's uint8 steps.
Private: the corruptions (frost, snow, spatter) are the public interface.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DIST_SHIFT",
    "box3_sum",
    "canny",
    "chamfer_distance",
    "equalize_hist",
    "gaussian_kernel1d",
    "gray",
    "pad1",
    "resize_linear",
]


# ITU-R BT.601 luma, as cv2.cvtColor(..., COLOR_RGB2GRAY) on float images
_LUMA = (0.299, 0.587, 0.114)


def gray(images: Tensor) -> Tensor:
    """``cv2.cvtColor(..., COLOR_RGB2GRAY)`` of float RGB images ``(N, 3, H, W)`` -> ``(N, 1, H, W)`` (BT.601 luma)."""
    r, g, b = images.unbind(1)
    return torch.mul(r, _LUMA[0]).add_(g, alpha=_LUMA[1]).add_(b, alpha=_LUMA[2]).unsqueeze(1)


def resize_linear(texture: Tensor, out_h: int, out_w: int, scale_y: float, scale_x: float) -> Tensor:
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


# cv2.Canny's tan(22.5°) in Q15 fixed point
_TG22 = int(0.4142135623730950488016887242097 * (1 << 15) + 0.5)
# cv2.distanceTransform(DIST_L2, 5): chamfer weights 1, 1.4f, 2.1969f for straight, diagonal and knight moves,
# in OpenCV's Q16 fixed point
DIST_SHIFT = 16
_CHAMFER = tuple(round(float(np.float32(v)) * (1 << DIST_SHIFT)) for v in (1.0, 1.4, 2.1969))
_DIST_CAP = 20  # cv2.threshold(dist, 20, 20, THRESH_TRUNC)


def pad1(x: Tensor, mode: str) -> Tensor:
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


def box3_sum(x: Tensor) -> Tensor:
    """Sum over each 3 × 3 window with OpenCV's default border (reflect-101), computed separably."""
    p = pad1(x, "mirror")
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


def canny(gray: Tensor, low: int, high: int) -> Tensor:
    """``cv2.Canny(gray, low, high)`` (aperture 3, L1 gradient) of uint8-valued int32 images ``(N, H, W)``.

    Sobel with replicated borders, non-maximum suppression with OpenCV's fixed-point sector test and tie rules
    (zero magnitude outside the image), then hysteresis: weak candidates 8-connected to strong ones.
    """
    p = pad1(gray, "nearest")
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


def chamfer_distance(edges: Tensor) -> Tensor:
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
    cap = _DIST_CAP << DIST_SHIFT
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


def equalize_hist(img: Tensor) -> Tensor:
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


def gaussian_kernel1d(ksize: int, sigma: float) -> np.ndarray:
    """``cv2.getGaussianKernel(ksize, sigma)`` for ``sigma > 0``: ``exp(-(i - (ksize - 1) / 2)² / 2σ²)``, normalised.

    Returns:
        The float64 kernel ``(ksize,)``.
    """
    x = np.arange(ksize, dtype=np.float64) - (ksize - 1) / 2
    k = np.exp(-0.5 * x**2 / sigma**2)
    return k / k.sum()
