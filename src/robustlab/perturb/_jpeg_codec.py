"""JPEG round trips through a real codec (torchvision's libjpeg-turbo on the CPU, nvJPEG on CUDA), where exact.

:mod:`robustlab.perturb.jpeg` models PIL's libjpeg-turbo round trip as batched float32 tensor arithmetic. On a
2-core CPU at 224 px that model runs at about half the speed of libjpeg-turbo's SIMD C code, so on the CPU the
round trip goes through the libjpeg-turbo that torchvision ships instead (``torchvision.io.encode_jpeg`` /
``decode_jpeg``): it runs the same encoder settings as PIL (JFIF YCbCr, 4:2:0, the scaled standard tables, the
accurate ``islow`` DCTs, fancy upsampling) and, called as a torch operator, releases the GIL, so a thread pool runs
one image per core. Neither simplejpeg nor TurboJPEG's default settings qualify: both encode with the fast ``ifast``
DCT (simplejpeg's ``fastdct=False`` does not reach its encoder), which moves decoded levels by up to 22.

The codec is used only where its output equals the batched model's, which is itself bit-exact to PIL: the first call
on each device type runs probe images through both and compares every level; any difference, a missing
torchvision or a codec error during the probe selects the batched model for the rest of the process.
``ROBUSTLAB_JPEG=model`` forces the batched model everywhere. On CUDA the probe decides whether nvJPEG
(``encode_jpeg`` on CUDA tensors) is exact; where it is not, GPUs keep the batched model, which runs there as is.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["codec_roundtrip", "codec_status", "try_roundtrip"]

# device type -> True (codec verified exact), False (use the batched model); filled by the first call per device type
_VERIFIED: dict[str, bool] = {}
_LOCK = threading.Lock()
_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, pool)
# qualities the probe checks: the extremes and a spread between (a different DCT, quantiser or upsampler moves levels
# at every quality; the tests check the codec against PIL at every benchmark quality)
_PROBE_QUALITIES = (1, 10, 25, 50, 85, 100)
# On the CPU the codec pays a fixed cost per image (two operator calls, the conversions); below this many pixels per
# image the batched model is the cheaper one: CPU ms per image at quality 15, model against codec, 0.05 / 0.11 at
# 32 px, 0.28 / 0.13 at 48 px, 0.82 / 0.18 at 64 px (2-core VM)
CPU_MIN_PIXELS = 40 * 40


def _forced_model() -> bool:
    return os.environ.get("ROBUSTLAB_JPEG", "").strip().lower() == "model"


class _Ops(NamedTuple):
    encode: Callable[[Tensor, int], Tensor]
    decode: Callable[[Tensor], Tensor]
    encode_cuda: Callable[[list[Tensor], int], list[Tensor]]
    decode_cuda: Callable[[list[Tensor], torch.device], list[Tensor]]


@functools.cache
def _codec_ops() -> _Ops | None:
    """torchvision's JPEG operators, called directly: its Python wrappers warn on every call that they are
    deprecated in favour of TorchCodec (torchvision 0.29), and the warning filters are not thread-safe to silence."""
    try:
        from torchvision.io import image as tv_image
    except (ImportError, OSError, RuntimeError):  # no torchvision, or one built against another torch
        return None
    if not getattr(tv_image, "_has_image_ops", lambda: False)():
        return None
    try:
        ops, rgb = torch.ops.image, tv_image.ImageReadMode.RGB.value
        return _Ops(
            encode=lambda img, q: ops.encode_jpeg(img, q),
            decode=lambda data: ops.decode_jpeg(data, rgb, False),
            encode_cuda=lambda imgs, q: ops.encode_jpegs_cuda(imgs, q),
            decode_cuda=lambda datas, dev: ops.decode_jpegs_cuda(datas, rgb, dev),
        )
    except (AttributeError, RuntimeError):  # operators renamed or missing in this build
        return None


def _pool(workers: int) -> ThreadPoolExecutor:
    """One process-wide pool; rebuilt after a fork (its threads do not survive one) or when the size changes."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] != workers:
        _POOL = (os.getpid(), workers, ThreadPoolExecutor(workers, thread_name_prefix="robustlab-jpeg"))
    return _POOL[2]


def _levels_roundtrip(hwc: Tensor, quality: int) -> Tensor:
    """Encode and decode uint8 images with the codec; returns the decoded uint8 levels.

    The CPU workers call nothing but the codec: every tensor copy (the layout changes, the stacking) happens in
    batched operations on the calling thread, since an intra-op parallel copy started from a worker thread opens a
    second OpenMP team and oversubscribes the cores (it made the pool slower than one thread).

    Shape:
        ``hwc``: ``(N, H, W, 3)`` uint8, contiguous -> ``(N, H, W, 3)`` uint8 on the same device.
    """
    ops = _codec_ops()
    assert ops is not None  # callers verified the codec first
    n = hwc.shape[0]
    if hwc.device.type == "cuda":  # nvJPEG codes the whole list in batched kernels
        # the batched decoder takes the JPEG bytes from host memory
        data = [d.cpu() for d in ops.encode_cuda([im.permute(2, 0, 1).contiguous() for im in hwc], quality)]
        return torch.stack([d.permute(1, 2, 0) for d in ops.decode_cuda(data, hwc.device)])

    def work(lo: int, hi: int) -> list[Tensor]:
        # a CHW view of HWC memory: the encoder's own HWC copy is then a no-op
        return [ops.decode(ops.encode(hwc[i].permute(2, 0, 1), quality)) for i in range(lo, hi)]

    decoded = [d for part in _in_parallel(n, work) for d in part]  # type: ignore[attr-defined]
    # the decoder returns CHW views of HWC buffers, so this stack is a plain copy
    return torch.stack([d.permute(1, 2, 0) for d in decoded])


def _in_parallel(n: int, work: Callable[[int, int], object]) -> list[object]:
    """``work(lo, hi)`` over contiguous slices of ``range(n)``, one per intra-op thread, on the pool."""
    workers = min(n, max(1, torch.get_num_threads()))
    if workers == 1:
        return [work(0, n)]
    bounds = [n * k // workers for k in range(workers + 1)]
    futures = [_pool(workers).submit(work, bounds[k], bounds[k + 1]) for k in range(workers)]
    return [f.result() for f in futures]


def _float32_roundtrip(images: Tensor, quality: int, rounding: str, out: Tensor) -> None:
    """The whole round trip per image on the pool, float32 in and out, the conversions in NumPy.

    NumPy's float32 ufuncs round exactly like the batched model's torch operations, release the GIL and never start
    OpenMP threads, so the conversions (as much work as the codec at 224 px) run in parallel beside the codec
    instead of in OpenMP regions whose idle threads spin against the pool's.
    """
    ops = _codec_ops()
    assert ops is not None
    src, dst = images.detach().numpy(), out.numpy()
    k255, eps = np.float32(255.0), np.float32(1e-3)

    def work(lo: int, hi: int) -> None:
        # float passes run on contiguous CHW planes; only the uint8 images (a quarter of the bytes) change layout
        for i in range(lo, hi):
            levels = np.multiply(src[i], k255, dtype=np.float32)
            if rounding == "floor":
                np.add(levels, eps, out=levels)  # validated inputs: positive, so the cast's truncation is floor
            else:
                np.round(levels, out=levels)  # half to even, as torch.round
            hwc = torch.from_numpy(np.ascontiguousarray(levels.astype(np.uint8).transpose(1, 2, 0)))
            decoded = ops.decode(ops.encode(hwc.permute(2, 0, 1), quality)).numpy()  # a CHW view of HWC memory
            np.divide(np.ascontiguousarray(decoded), k255, out=dst[i], dtype=np.float32)

    _in_parallel(images.shape[0], work)


def _probe_images(device: torch.device) -> Tensor:
    """Deterministic 8-bit test images: textures, hard edges, saturated pixels and a size that is no MCU multiple."""
    h, w = 37, 53
    yy = torch.arange(h, dtype=torch.float64)[:, None]
    xx = torch.arange(w, dtype=torch.float64)[None, :]
    planes = []
    for c in range(3):
        wave = 127.5 + 127.5 * torch.sin(xx / (2.0 + c) + yy / (3.0 + c)) * torch.cos(xx * yy / (50.0 + 7 * c))
        planes.append(wave)
    smooth = torch.stack(planes)
    hashed = (xx * 7919 + yy * 104729 + torch.arange(3.0)[:, None, None] * 1299709) % 256  # noise-like, fixed
    edges = ((xx // 8 + yy // 8) % 2) * 255
    images = torch.stack([smooth, hashed, edges.expand(3, h, w)])
    return images.round().clamp(0, 255).to(torch.uint8).to(device)


Model = Callable[..., Tensor]


def try_roundtrip(images: Tensor, quality: int, rounding: str, out: Tensor, scale: bool, model: Model) -> bool:
    """Round-trip ``images`` through the codec into ``out`` where that is exact and faster; False leaves ``out`` alone.

    Args:
        images: validated pixels in [0, 1].
        quality: JPEG quality 1..100.
        rounding: ``"floor"`` or ``"nearest"``, as in :func:`robustlab.perturb.jpeg.jpeg_roundtrip`.
        out: float32 destination of the decoded levels (/ 255 if ``scale``).
        scale: divide the levels by 255.
        model: the batched model, called as ``model(images, quality, "floor", codec=False)``, the probe's truth.

    Returns:
        Whether the codec wrote ``out``.

    Shape:
        ``images`` and ``out``: ``(N, 3, H, W)``.
    """
    if not images.numel():
        return False
    if images.device.type == "cpu" and images.shape[-2] * images.shape[-1] < CPU_MIN_PIXELS:
        return False
    if max(images.shape[-2:]) > 65500:  # libjpeg's largest side; the model has no limit
        return False
    if not codec_status(images.device, model):
        return False
    codec_roundtrip(images, quality, rounding, out, scale)
    return True


def codec_status(device: torch.device, model: Model) -> bool:
    """Whether the codec is verified exact on ``device`` (probing it on first use with ``model`` as the truth).

    Args:
        device: where the images live.
        model: the batched model, called as ``model(images, quality, "floor", codec=False)`` on float32 images.

    Returns:
        True when :func:`codec_roundtrip` may be used on this device type.
    """
    if _forced_model():
        return False
    kind = device.type
    if kind in _VERIFIED:
        return _VERIFIED[kind]
    with _LOCK:
        if kind not in _VERIFIED:
            _VERIFIED[kind] = _probe(device, model)
    return _VERIFIED[kind]


def _probe(device: torch.device, model: Model) -> bool:
    if device.type not in ("cpu", "cuda") or _codec_ops() is None:
        return False
    levels = _probe_images(device)
    hwc = levels.permute(0, 2, 3, 1).contiguous()
    try:
        for quality in _PROBE_QUALITIES:
            got = _levels_roundtrip(hwc, quality).permute(0, 3, 1, 2)
            want = model(levels.float().div(255.0), quality, "floor", codec=False).mul(255.0).round().to(torch.uint8)
            if not torch.equal(got, want):
                return False
    except (AttributeError, RuntimeError, ValueError, TypeError, NotImplementedError):  # not in this device or build
        return False
    return True


def codec_roundtrip(images: Tensor, quality: int, rounding: str, out: Tensor, scale: bool) -> None:
    """Round-trip validated ``images`` through the codec into float32 ``out`` (levels, or levels / 255 if ``scale``).

    Callers check :func:`codec_status` first. Inputs become 8-bit levels exactly as in the batched model: truncation
    with a 1e-3-level tolerance (``"floor"``) or rounding (``"nearest"``).

    Shape:
        ``images`` and ``out``: ``(N, 3, H, W)``.
    """
    if images.device.type == "cpu" and images.dtype == torch.float32 and scale and images.is_contiguous():
        _float32_roundtrip(images, quality, rounding, out)
        return
    # the same float steps as the batched model (the product in the input's precision, then float32). Validated
    # inputs lie in [-1e-6, 1 + 1e-6], so every level + 1e-3 (or + 0.5) is positive and the uint8 cast's truncation is
    # the model's floor; "nearest" keeps round-half-even like the model
    levels = torch.mul(images.detach(), 255.0, out=torch.empty(images.shape, dtype=torch.float32, device=images.device))
    levels = levels.add_(1e-3) if rounding == "floor" else levels.round_()
    n, _, h, w = images.shape
    hwc = torch.empty((n, h, w, 3), dtype=torch.uint8, device=images.device)
    hwc.copy_(levels.permute(0, 2, 3, 1))  # the cast and the layout change in one pass
    decoded = _levels_roundtrip(hwc, quality).permute(0, 3, 1, 2)
    if scale:
        torch.div(decoded, 255.0, out=out)  # float32 division of the levels, as the model's out / 255
    else:
        out.copy_(decoded)
