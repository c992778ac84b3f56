"""Pixelate: Pillow's BOX downscale and upscale, reproduced with its fixed-point rounding, batched.

Fidelity: every recipe follows hendrycks/robustness ``make_imagenet_c.py`` / ``make_cifar_c.py`` /
``make_tinyimagenet_c.py``; where the ``imagecorruptions`` package departs from it, the function's docstring says so.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab.perturb._common import setup_corruption, work_dtype
from robustlab.perturb._registry import PERTURBATIONS
from robustlab.rng import Generators

__all__ = ["apply_pixelate", "pixelate"]

# ------------------------------------------------------------------------------------------------------- pixelate


_PIL_PRECISION = 1 << 22  # Pillow's 8-bit resampling keeps 22 fractional bits per coefficient


@functools.lru_cache(maxsize=64)
def _pil_box_taps(n_in: int, n_out: int) -> tuple[Tensor, Tensor, Tensor]:
    """Pillow's BOX resampling along one axis as taps: ``(index, weight, rounding)``.

    ``index`` / ``weight`` are ``(n_out, K)`` (zero-padded), ``rounding`` is ``(n_out,)``: the constant to add
    before ``floor`` to reproduce Pillow's fixed-point rounding of the 8-bit result.

    Pillow's BOX is not an area filter: output pixel ``o`` (centre ``c = (o + 0.5) · scale`` in input pixels)
    averages, with equal weights, the input pixels ``j`` with ``-1/2 < (j + 1/2 - c) / max(scale, 1) <= 1/2``.
    Upsampling therefore picks exactly one input pixel, ``floor(c)`` (nearest neighbour).
    """
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    ss = 1.0 / filterscale
    rows: list[list[int]] = []
    for o in range(n_out):
        center = (o + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        rows.append([j for j in range(lo, hi) if -0.5 < (j - center + 0.5) * ss <= 0.5])
    k = max(len(r) for r in rows)
    index = torch.zeros(n_out, k, dtype=torch.long)
    weight = torch.zeros(n_out, k, dtype=torch.float64)
    rounding = torch.empty(n_out, dtype=torch.float64)
    for o, taps in enumerate(rows):
        index[o, : len(taps)] = torch.tensor(taps, dtype=torch.long)
        weight[o, : len(taps)] = 1.0 / len(taps)
        # Pillow rounds each coefficient to 22 bits; when they sum to less than 1 an exact .5 rounds down, else up.
        # The ±1e-3 nudge decides exact halves only (other averages of n <= 100 taps sit >= 1/(2n) away from .5).
        kk = int(0.5 + (1.0 / len(taps)) * _PIL_PRECISION)
        rounding[o] = 0.5 + (1e-3 if kk * len(taps) >= _PIL_PRECISION else -1e-3)
    return index, weight, rounding


@functools.lru_cache(maxsize=64)
def _pil_box_bins(n_in: int, n_out: int) -> tuple[Tensor, Tensor] | None:
    """``(bin of each input sample, 1 / bin size)`` when Pillow's BOX taps split the axis into disjoint bins.

    A downscale (``n_out <= n_in``) assigns every input sample to exactly one output (its centre falls in one
    ``(o · scale, (o + 1) · scale]`` interval), so the pass is a segment sum. Returns None otherwise.
    """
    index, weight, _ = _pil_box_taps(n_in, n_out)
    counts = (weight > 0).sum(1)
    bins = torch.full((n_in,), -1, dtype=torch.long)
    for o in range(n_out):
        taps = index[o, : int(counts[o])]
        if (bins[taps] >= 0).any():
            return None
        bins[taps] = o
    if (bins < 0).any():
        return None
    return bins, 1.0 / counts.double()


def _box_down(x: Tensor, dim: int, n_out: int, gain: float) -> Tensor:
    """One Pillow BOX pass along ``dim`` (-1 or -2) to ``n_out`` samples, times ``gain``, rounded to integers."""
    index, weight, rounding = _pil_box_taps(x.shape[dim], n_out)
    bins = _pil_box_bins(x.shape[dim], n_out) if dim == -1 else None
    if bins is not None:
        # a segment sum: about twice as fast on CPU as gathering each tap along the last axis. Every output is an
        # equal-weight mean, so the summation order moves it by float rounding only, far inside rounding's +-1e-3
        seg, inv = bins
        out = torch.zeros(*x.shape[:-1], n_out, dtype=x.dtype, device=x.device)
        out.index_add_(-1, seg.to(x.device), x)
        out.mul_((inv * gain).to(device=x.device, dtype=x.dtype))
        return out.add_(rounding.to(device=x.device, dtype=x.dtype)).floor_()
    index = index.to(x.device)
    weight = (weight * gain).to(device=x.device, dtype=x.dtype)
    if dim == -1:
        # torch.gather with a broadcast (stride-0) index is the fastest gather along the last axis on CPU
        rows = x.reshape(-1, x.shape[-1])
        taps = index.T.unsqueeze(1).expand(-1, rows.shape[0], -1)  # (K, rows, n_out)
        out = torch.gather(rows, 1, taps[0]).mul_(weight[:, 0])
        for k in range(1, index.shape[1]):
            out.addcmul_(torch.gather(rows, 1, taps[k]), weight[:, k])
        out = out.add_(rounding.to(device=x.device, dtype=x.dtype)).view(*x.shape[:-1], n_out)
    else:
        out = x.index_select(-2, index[:, 0]).mul_(weight[:, 0, None])
        for k in range(1, index.shape[1]):
            out.addcmul_(x.index_select(-2, index[:, k]), weight[:, k, None])
        out.add_(rounding.to(device=x.device, dtype=x.dtype)[:, None])
    return out.floor_()


@functools.lru_cache(maxsize=64)
def _nearest_exact_matches_pil(device_type: str, n_in: int, n_out: int) -> bool:
    # F.interpolate(mode="nearest-exact") computes floor((o + 0.5) · scale) in float and so breaks some exact ties
    # differently from Pillow (double); use it only for the sizes where it picks the same pixels on this device
    ramp = torch.arange(n_in, dtype=torch.float32, device=device_type).view(1, 1, 1, n_in)
    picked = F.interpolate(ramp, size=(1, n_out), mode="nearest-exact").flatten().long().cpu()
    return torch.equal(picked, _pil_box_taps(n_in, n_out)[0][:, 0])


def _box_up(x: Tensor, height: int, width: int) -> Tensor:
    """Pillow BOX upscale of ``x`` to ``height x width``: a nearest-neighbour pick, exact on the uint8 grid."""
    small_h, small_w = x.shape[-2:]
    dev = x.device.type
    if _nearest_exact_matches_pil(dev, small_h, height) and _nearest_exact_matches_pil(dev, small_w, width):
        return F.interpolate(x, size=(height, width), mode="nearest-exact")
    rows = _pil_box_taps(small_h, height)[0][:, 0].to(x.device)
    cols = _pil_box_taps(small_w, width)[0][:, 0].to(x.device)
    flat = x.reshape(-1, small_w)
    wide = torch.gather(flat, 1, cols.expand(flat.shape[0], -1)).view(*x.shape[:-1], width)
    return wide.index_select(-2, rows)


def apply_pixelate(images: Tensor, factor: float) -> Tensor:
    """Pillow-exact BOX downscale to ``int(size · factor)`` and BOX upscale back to the original size.

    Reproduces Pillow's 8-bit two-pass resampling (horizontal pass, then vertical, each rounded to the uint8 grid):
    on uint8-valued inputs the result equals ``PIL.Image.resize(..., BOX)`` twice, bit for bit. Other inputs are
    treated the same way (their downscaled image is rounded to the uint8 grid, as Pillow's would be).

    Args:
        images: clean pixels.
        factor: downscale factor in (0, 1]; the small image is ``int(H · factor) x int(W · factor)``.

    Returns:
        Pixelated pixels in [0, 1], same shape, dtype and device.

    Shape:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``.

    Raises:
        ValueError: a factor that is not in (0, 1] or leaves less than one pixel.
    """
    height, width = images.shape[-2:]
    small_h, small_w = int(height * factor), int(width * factor)
    if not 0 < factor <= 1 or small_h < 1 or small_w < 1:
        raise ValueError(
            f"pixelate factor must lie in (0, 1] and leave at least one pixel of {height}x{width}, got {factor!r}"
        )
    dtype = work_dtype(images)
    x = images.to(dtype)
    # Pillow skips an axis whose size does not change; work in uint8 levels until the image is small
    if small_w != width:
        x = _box_down(x, -1, small_w, 255.0)
    else:
        x = (x * 255.0).add_(0.5).floor_()
    if small_h != height:
        x = _box_down(x, -2, small_h, 1.0)
    return _box_up(x.div_(255.0), height, width).to(images.dtype)  # levels 0..255: already in [0, 1]


@PERTURBATIONS.register
def pixelate(images: Tensor, severity: int, *, generator: Generators = None, profile: str | None = None) -> Tensor:
    """ImageNet-C pixelate: Pillow BOX downscale by the severity's factor, then BOX upscale back.

    Args:
        images: clean pixels.
        severity: 1..5.
        generator: unused (deterministic corruption); accepted for a uniform signature.
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"``; default chosen from the image size.

    Returns:
        Corrupted pixels, same shape, dtype and device, in [0, 1].

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: images not ``(N, 3, H, W)`` float in [0, 1], severity outside 1..5, unknown profile.

    Note:
        The original upscales with BOX, ``imagecorruptions`` with NEAREST. Pillow's BOX upscale picks one source
        pixel per output pixel; at 224, 64 and 32 px it picks the same pixels as NEAREST (measured: identical
        output), and differs only where a source pixel edge falls exactly on an output pixel centre (e.g. 90 ->
        225 px). This follows the original (BOX). The small image is
        ``int(H · c) x int(W · c)`` (the original hard-codes its benchmark's square size). The uint8 rounding of
        Pillow's intermediate passes is reproduced; see :func:`apply_pixelate`.
    """
    factor, _ = setup_corruption("pixelate", images, severity, profile)
    return apply_pixelate(images, factor)
