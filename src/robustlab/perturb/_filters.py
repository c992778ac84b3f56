"""Batched linear filters shared by the corruptions, matching the SciPy / scikit-image / OpenCV ops they replace.

* :func:`gaussian_blur2d` — ``scipy.ndimage.gaussian_filter`` over the two spatial axes (what
  ``skimage.filters.gaussian(..., channel_axis=-1)`` does): same kernel (radius ``int(truncate * sigma + 0.5)``,
  weights ``exp(-x² / 2σ²)`` normalised in float64), same border modes.
* :func:`filter2d` — ``cv2.filter2D`` (a correlation, anchor at the kernel centre, ``BORDER_REFLECT_101`` by
  default), one kernel for the whole batch or one per image.
* :func:`motion_blur2d` — ImageMagick's ``MotionBlurImage`` (the ImageNet-C motion blur, also re-implemented by
  ``imagecorruptions``): a one-sided Gaussian-weighted sum of copies shifted along an angle, edge pixels repeated.

Every op takes ``(..., H, W)`` tensors on any device and keeps their dtype; borders are built by index arithmetic,
so pads wider than the image behave like the reference (periodic reflection) instead of failing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# SciPy's names first; OpenCV's names map onto them.
_MODES = ("reflect", "mirror", "nearest", "wrap", "constant")
_ALIASES = {
    "grid-mirror": "reflect",
    "symmetric": "reflect",
    "reflect101": "mirror",
    "reflect_101": "mirror",
    "replicate": "nearest",
    "edge": "nearest",
    "grid-wrap": "wrap",
    "circular": "wrap",
    "grid-constant": "constant",
}


def _canonical_mode(mode: str) -> str:
    m = _ALIASES.get(mode, mode)
    if m not in _MODES:
        raise ValueError(f"unknown border mode {mode!r}; expected one of {sorted(set(_MODES) | set(_ALIASES))}")
    return m


def border_indices(size: int, before: int, after: int, mode: str, device: torch.device | str | None = None) -> Tensor:
    """Source index of every position of an axis padded by ``before`` / ``after`` under ``mode``.

    ``reflect`` repeats the edge sample (SciPy ``reflect``, OpenCV ``BORDER_REFLECT``), ``mirror`` does not (SciPy
    ``mirror``, OpenCV ``BORDER_REFLECT_101``), ``nearest`` repeats the edge, ``wrap`` is periodic. Pads wider than
    the axis keep reflecting periodically, as SciPy and OpenCV do. ``constant`` has no source index; callers pad it
    with a value instead.

    Raises:
        ValueError: unknown mode, or ``constant``.
    """
    mode = _canonical_mode(mode)
    i = torch.arange(-before, size + after, device=device)
    if mode == "nearest":
        return i.clamp(0, size - 1)
    if mode == "wrap":
        return i.remainder(size)
    if mode == "reflect":
        i = i.remainder(2 * size)
        return torch.where(i >= size, 2 * size - 1 - i, i)
    if mode == "mirror":
        if size == 1:
            return torch.zeros_like(i)
        period = 2 * size - 2
        i = i.remainder(period)
        return torch.where(i >= size, period - i, i)
    raise ValueError("constant borders have no source index; pad with a value")


def pad2d(x: Tensor, top: int, bottom: int, left: int, right: int, mode: str, cval: float = 0.0) -> Tensor:
    """Pad the last two axes of ``x`` under a SciPy/OpenCV border ``mode`` (any pad width)."""
    mode = _canonical_mode(mode)
    if mode == "constant":
        return F.pad(x, (left, right, top, bottom), mode="constant", value=cval)
    if top or bottom:
        x = _pad_axis(x, top, bottom, -2, mode)
    if left or right:
        x = _pad_axis(x, left, right, -1, mode)
    return x


def _pad_axis(x: Tensor, before: int, after: int, axis: int, mode: str) -> Tensor:
    # gather only the border samples and concatenate: one copy of the bulk instead of a full index_select
    size = x.shape[axis]
    idx = border_indices(size, before, after, mode, x.device)
    parts = [x.index_select(axis, idx[:before])] if before else []
    parts.append(x)
    if after:
        parts.append(x.index_select(axis, idx[before + size :]))
    return torch.cat(parts, dim=axis)


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """SciPy's 1-D Gaussian weights (float64): radius ``int(truncate * sigma + 0.5)``, normalised to sum 1."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 / (float(sigma) ** 2) * x**2)
    return w / w.sum()


def _cpu_chunk(images: Tensor, budget: int = 1 << 19) -> int:
    """Images per chunk: the whole batch on accelerators; on CPU a few images, so each pass stays in cache."""
    n = max(1, images.shape[0])
    if images.device.type != "cpu":
        return n
    per_image = max(1, images[0].numel()) if images.shape[0] else 1
    return max(1, min(n, budget // per_image))


def _correlate1d(
    x: Tensor, weights: np.ndarray, axis: int, mode: str, cval: float, out: Tensor | None = None
) -> Tensor:
    """Correlate axis ``axis`` (-2 or -1) of ``x`` with ``weights`` (odd length, centred), SciPy-style borders.

    A sum of shifted slices, written into ``out`` when given: on CPU this beats a single-channel ``conv2d``
    several times over for these shapes.
    """
    r = len(weights) // 2
    w = [float(v) for v in weights]
    if r == 0:
        return torch.mul(x, w[0], out=out) if out is not None else x * w[0]
    xp = pad2d(x, r, r, 0, 0, mode, cval) if axis == -2 else pad2d(x, 0, 0, r, r, mode, cval)
    length = x.shape[axis]
    res = torch.mul(xp.narrow(axis, 0, length), w[0], out=out) if out is not None else xp.narrow(axis, 0, length) * w[0]
    for i in range(1, len(w)):
        res.add_(xp.narrow(axis, i, length), alpha=w[i])
    return res


def _as_pair(sigma: float | Sequence[float]) -> tuple[float, float]:
    if isinstance(sigma, (int, float)):
        return float(sigma), float(sigma)
    sy, sx = sigma
    return float(sy), float(sx)


def gaussian_blur2d(
    images: Tensor,
    sigma: float | Sequence[float],
    *,
    mode: str = "nearest",
    truncate: float = 4.0,
    cval: float = 0.0,
) -> Tensor:
    """Gaussian blur of the last two axes, equal to ``scipy.ndimage.gaussian_filter`` on each channel.

    With the defaults this is ``skimage.filters.gaussian(image, sigma, channel_axis=-1)`` (mode ``nearest``,
    truncate 4). Computed in the input's dtype; the float64 reference differs by float32 rounding only.

    Args:
        images: tensor whose last two axes are (H, W), e.g. ``(N, C, H, W)``.
        sigma: standard deviation in pixels, one value or ``(sigma_y, sigma_x)``; 0 leaves that axis alone.
        mode: border mode: ``nearest`` (default), ``reflect``, ``mirror``, ``wrap``, ``constant`` (SciPy names;
            OpenCV-style aliases such as ``reflect101`` and ``replicate`` are accepted too).
        truncate: kernel radius in standard deviations.
        cval: fill value of the ``constant`` mode.

    Returns:
        The blurred tensor, same shape, dtype and device.

    Shape:
        ``(..., H, W)`` -> ``(..., H, W)``.

    Raises:
        ValueError: a negative sigma, an unknown mode or fewer than two dimensions.
    """
    if images.ndim < 2:
        raise ValueError(f"gaussian_blur2d needs (..., H, W) tensors, got shape {tuple(images.shape)}")
    sy, sx = _as_pair(sigma)
    if sy < 0 or sx < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    _canonical_mode(mode)
    shape = images.shape
    x = images.reshape(-1, shape[-2], shape[-1])
    ky = gaussian_kernel1d(sy, truncate) if sy > 1e-15 else None  # SciPy skips a zero-sigma axis
    kx = gaussian_kernel1d(sx, truncate) if sx > 1e-15 else None
    if (ky is None and kx is None) or x.shape[0] == 0:
        return images.clone()
    out = torch.empty_like(x)
    step = _cpu_chunk(x, 1 << 18)
    for i in range(0, x.shape[0], step):
        part, dest = x[i : i + step], out[i : i + step]
        if ky is not None and kx is not None:
            _correlate1d(_correlate1d(part, ky, -2, mode, cval), kx, -1, mode, cval, out=dest)
        elif ky is not None:
            _correlate1d(part, ky, -2, mode, cval, out=dest)
        elif kx is not None:  # always, given the early return above
            _correlate1d(part, kx, -1, mode, cval, out=dest)
    return out.reshape(shape)


def filter2d(images: Tensor, kernel: Tensor | np.ndarray, border: str = "reflect101", cval: float = 0.0) -> Tensor:
    """2-D correlation of every channel with ``kernel``, equal to ``cv2.filter2D(src, -1, kernel)`` per channel.

    The anchor is the kernel centre ``(kh // 2, kw // 2)`` and the default border ``reflect101`` is OpenCV's
    ``BORDER_REFLECT_101`` (``gfedcb|abcdefgh|gfedcba``). The kernel is not flipped (OpenCV correlates).

    Args:
        images: ``(N, C, H, W)`` tensor.
        kernel: ``(kh, kw)`` for the whole batch, or ``(N, kh, kw)`` with one kernel per image.
        border: ``reflect101`` (default), ``reflect``, ``replicate``, ``wrap`` or ``constant``.
        cval: fill value of the ``constant`` border.

    Returns:
        Filtered images, same shape, dtype and device.

    Shape:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``.

    Raises:
        ValueError: images not 4-D, a kernel of the wrong rank or batch size, an unknown border.
    """
    if images.ndim != 4:
        raise ValueError(f"filter2d needs (N, C, H, W) images, got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    k = torch.as_tensor(kernel).to(device=images.device, dtype=images.dtype)
    if k.ndim == 2:
        per_image = False
    elif k.ndim == 3 and k.shape[0] == n:
        per_image = True
    else:
        raise ValueError(f"kernel must be (kh, kw) or (N={n}, kh, kw), got shape {tuple(k.shape)}")
    if n == 0:
        return images.clone()
    kh, kw = k.shape[-2:]
    ay, ax = kh // 2, kw // 2
    pads = (ay, kh - 1 - ay, ax, kw - 1 - ax)
    if kh * kw > _DIRECT_TAPS:
        # large kernels (defocus disks are 17x17 and up): FFT convolution, like OpenCV's own DFT path
        return _fft_correlate(images, k if per_image else k.unsqueeze(0), pads, border, cval)
    xp = pad2d(images, *pads, border, cval)
    if per_image:
        weight = k.repeat_interleave(c, dim=0).unsqueeze(1)  # (N*C, 1, kh, kw)
        out = F.conv2d(xp.reshape(1, n * c, h + kh - 1, w + kw - 1), weight, groups=n * c)
    else:
        out = F.conv2d(xp.reshape(n * c, 1, h + kh - 1, w + kw - 1), k.view(1, 1, kh, kw))
    return out.reshape(n, c, h, w)


# kernels with more taps than this go through the FFT (direct conv2d is ~8x slower at 17x17 on CPU)
_DIRECT_TAPS = 49


def _pad_into(x: Tensor, dest: Tensor, pads: tuple[int, int, int, int], mode: str, cval: float) -> None:
    """Write ``x`` padded by ``pads`` (top, bottom, left, right) under ``mode`` into ``dest``."""
    top, bottom, left, right = pads
    h, w = x.shape[-2:]
    mode = _canonical_mode(mode)
    if mode == "constant":
        dest.fill_(cval)
        dest[..., top : top + h, left : left + w] = x
        return
    rows = border_indices(h, top, bottom, mode, x.device)
    cols = border_indices(w, left, right, mode, x.device)
    dest[..., top : top + h, left : left + w] = x
    if top:
        dest[..., :top, left : left + w] = x.index_select(-2, rows[:top])
    if bottom:
        dest[..., top + h :, left : left + w] = x.index_select(-2, rows[top + h :])
    if left:
        dest[..., :, :left] = dest[..., :, left : left + w].index_select(-1, cols[:left])
    if right:
        dest[..., :, left + w :] = dest[..., :, left : left + w].index_select(-1, cols[left + w :])


def _fft_size(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n (fast FFT lengths)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _fft_correlate(
    images: Tensor, k: Tensor, pads: tuple[int, int, int, int], border: str, cval: float = 0.0
) -> Tensor:
    """Correlation of ``images`` (N, C, H, W) with ``k`` (1 or N, kh, kw) after padding by ``pads``, via FFT."""
    n, c, h, w = images.shape
    kh, kw = k.shape[-2:]
    top, bottom, left, right = pads
    fh, fw = _fft_size(h + top + bottom), _fft_size(w + left + right)
    # correlation = convolution with the flipped kernel; the valid block then starts at (kh-1, kw-1)
    spec_k = torch.fft.rfft2(k.flip(-2, -1), s=(fh, fw)).unsqueeze(1)  # (1|N, 1, fh, fw//2+1)
    out = torch.empty_like(images)
    step = _cpu_chunk(images, 1 << 19)
    hp, wp = h + top + bottom, w + left + right
    buf = torch.zeros(min(step, n), c, fh, fw, dtype=images.dtype, device=images.device)
    for i in range(0, n, step):
        part = images[i : i + step]
        m = part.shape[0]
        # build the padded chunk straight into a zeroed FFT-sized buffer (one copy instead of two)
        _pad_into(part, buf[:m, :, :hp, :wp], (top, bottom, left, right), border, cval)
        spec = torch.fft.rfft2(buf[:m])
        spec.mul_(spec_k if spec_k.shape[0] == 1 else spec_k[i : i + step])
        full = torch.fft.irfft2(spec, s=(fh, fw))
        out[i : i + step] = full[..., kh - 1 : kh - 1 + h, kw - 1 : kw - 1 + w]
    return out


def motion_blur_offsets(radius: float, sigma: float, angle: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ImageMagick's motion-blur taps: ``(weights, dy, dx)``, each of length ``2 * ceil(radius) + 1``.

    Tap ``i`` reads the pixel at ``(y + dy[i], x + dx[i])`` with weight ``weights[i]`` ∝ ``exp(-i² / 2σ²)``, the
    offsets being ``ceil(i * sin(angle) - 0.5)`` and ``ceil(i * cos(angle) - 0.5)`` (``MotionBlurImage`` in
    ImageMagick's effect.c; ``imagecorruptions`` uses the same formulas).
    """
    width = int(2 * math.ceil(radius) + 1)
    i = np.arange(width, dtype=np.float64)
    weights = np.exp(-(i**2) / (2.0 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)
    weights = weights / weights.sum()
    py = width * math.sin(math.radians(angle))
    px = width * math.cos(math.radians(angle))
    hyp = math.hypot(py, px)
    dy = np.ceil(i * py / hyp - 0.5).astype(np.int64)
    dx = np.ceil(i * px / hyp - 0.5).astype(np.int64)
    return weights, dy, dx


def shift_sum(images: Tensor, weights: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    """Weighted sum of integer-shifted copies with edge pixels repeated, a different shift set per image.

    ``out[n, :, y, x] = Σ_t weights[n, t] · images[n, :, clamp(y + dy[n, t]), clamp(x + dx[n, t])]``.

    Args:
        images: ``(N, C, H, W)``.
        weights: ``(N, T)`` tap weights.
        dy: ``(N, T)`` integer row offsets.
        dx: ``(N, T)`` integer column offsets.

    Returns:
        ``(N, C, H, W)`` in the images' dtype.

    Shape:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``.
    """
    n, c, h, w = images.shape
    if n == 0 or weights.shape[-1] == 0:
        return torch.zeros_like(images)
    dy = dy.to(torch.int64).cpu()
    dx = dx.to(torch.int64).cpu()
    weights = weights.to(images.device, images.dtype)
    # pad once by the largest offsets (edges repeated); every tap is then an H x W window of the padded image
    # whose corner differs per image. Each window row is a contiguous run of W values in the flat buffer, so one
    # index_select over an overlapping (start, W) view gathers a whole tap for the batch with row-sized copies.
    top, bottom = max(0, -int(dy.min())), max(0, int(dy.max()))
    left, right = max(0, -int(dx.min())), max(0, int(dx.max()))
    outs = []
    step = _cpu_chunk(images)
    for i in range(0, n, step):
        part = images[i : i + step]
        m = part.shape[0]
        xp = pad2d(part, top, bottom, left, right, "nearest").contiguous()
        hp, wp = h + top + bottom, w + left + right
        flat = xp.view(-1)
        rows = flat.as_strided((flat.numel() - w + 1, w), (1, 1))
        row_start = (torch.arange(m * c).view(m, c, 1) * hp + torch.arange(h).view(1, 1, h)) * wp
        starts = row_start.unsqueeze(0) + ((dy[i : i + m] + top) * wp + dx[i : i + m] + left).T.reshape(-1, m, 1, 1)
        starts = starts.to(images.device)
        out = torch.zeros_like(part)
        wt = weights[i : i + m]
        for t in range(weights.shape[1]):
            tap = rows.index_select(0, starts[t].reshape(-1)).view(m, c, h, w)
            out.addcmul_(tap, wt[:, t].view(m, 1, 1, 1))
        outs.append(out)
    return torch.cat(outs)


def motion_blur2d(images: Tensor, radius: float, sigma: float, angles: Tensor | Sequence[float]) -> Tensor:
    """ImageMagick-style motion blur with one angle (degrees) per image, edge pixels repeated.

    Args:
        images: ``(N, C, H, W)``.
        radius: blur radius in pixels (kernel width ``2 * ceil(radius) + 1``).
        sigma: Gaussian fall-off of the tap weights.
        angles: ``(N,)`` angles in degrees (0 = blur towards +x, positive angles towards +y).

    Returns:
        Blurred images, same shape, dtype and device.

    Shape:
        ``(N, C, H, W)``, angles ``(N,)`` -> ``(N, C, H, W)``.

    Raises:
        ValueError: wrong number of angles or sigma <= 0.
    """
    n = images.shape[0]
    ang = [float(a) for a in (angles.tolist() if isinstance(angles, Tensor) else angles)]
    if len(ang) != n:
        raise ValueError(f"motion_blur2d needs one angle per image: got {len(ang)} angles for {n} images")
    if not sigma > 0 or not radius > 0:
        raise ValueError(f"motion blur needs radius > 0 and sigma > 0, got radius={radius}, sigma={sigma}")
    if n == 0:
        return images.clone()
    taps = [motion_blur_offsets(radius, sigma, a) for a in ang]
    weights = torch.as_tensor(np.stack([t[0] for t in taps]))
    dy = torch.as_tensor(np.stack([t[1] for t in taps]))
    dx = torch.as_tensor(np.stack([t[2] for t in taps]))
    return shift_sum(images, weights, dy, dx)


def clipped_zoom(images: Tensor, zoom: float) -> Tensor:
    """Zoom into the centre by ``zoom`` and cut back to (H, W), as the original benchmark's ``clipped_zoom``.

    The central ``ceil(side / zoom)`` pixels are enlarged with linear interpolation on SciPy's grid
    (``scipy.ndimage.zoom(order=1)``: output ``i`` samples input ``i * (in - 1) / (out - 1)``, which is
    ``align_corners=True``; output side ``round(crop * zoom)``) and the centre ``H x W`` is kept.

    Shape:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``.
    """
    if zoom == 1:
        return images
    h, w = images.shape[-2:]
    ch, cw = math.ceil(h / zoom), math.ceil(w / zoom)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = images[..., top : top + ch, left : left + cw]
    oh, ow = round(ch * zoom), round(cw * zoom)
    out = F.interpolate(crop, size=(oh, ow), mode="bilinear", align_corners=True)
    th, tw = (oh - h) // 2, (ow - w) // 2
    return out[..., th : th + h, tw : tw + w]
