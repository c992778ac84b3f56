"""JPEG compression: a batched torch model of the baseline codec that PIL (libjpeg-turbo) runs with its defaults.

The benchmark's ``jpeg_compression`` saves each image with ``PIL.Image.save(..., "JPEG", quality=q)`` and decodes it
again; the released ImageNet-C files were moreover all saved as JPEG of quality 85. Both are a pure function of the
8-bit pixels and the quality, so they can be reproduced without a per-image loop. Every stage below follows
libjpeg-turbo's integer arithmetic (the ``islow`` DCTs, its reciprocal-multiplication quantiser, the biased 2x2
chroma averaging and the "fancy" triangle-filter upsampling, the 16-bit fixed-point colour conversions, the edge
padding), so the decoded levels equal PIL's bit for bit. The integers are carried in float32, where every
intermediate stays an exactly representable integer (times a power of two), and the 8-point transforms run as small
matrix products, so the same code runs on CPU and CUDA. Huffman coding is lossless and left out.

Speed: libjpeg-turbo's SIMD C code beats this model on the CPU from about 40 px, so there larger images go through a
real codec where it is verified bit-exact (:mod:`robustlab.perturb._jpeg_codec`); GPUs run the model or nvJPEG.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import torch
from torch import Tensor

from robustlab._checks import check_images
from robustlab.perturb import _jpeg_codec
from robustlab.perturb._common import setup_corruption
from robustlab.perturb._registry import PERTURBATIONS

__all__ = ["jpeg_compression", "jpeg_quant_tables", "jpeg_roundtrip"]

# Base quantisation tables of the JPEG standard (ITU-T T.81 Annex K.1, the IJG defaults), natural (row-major) order.
_LUMA_BASE = (
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
_CHROMA_BASE = (
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
) + (99,) * 32  # fmt: skip

_SCALE_BITS = 16  # fixed-point precision of libjpeg's colour conversions
_CONST_BITS = 13  # fixed-point precision of the islow DCT constants
_PASS1_BITS = 2  # extra precision kept between the two DCT passes


def _fix(x: float, bits: int) -> int:
    return int(x * (1 << bits) + 0.5)


def _islow_dct_constants() -> dict[str, int]:
    names = {
        "c0298": 0.298631336, "c0390": 0.390180644, "c0541": 0.541196100, "c0765": 0.765366865,
        "c0899": 0.899976223, "c1175": 1.175875602, "c1501": 1.501321110, "c1847": 1.847759065,
        "c1961": 1.961570560, "c2053": 2.053119869, "c2562": 2.562915447, "c3072": 3.072711026,
    }  # fmt: skip
    return {k: _fix(v, _CONST_BITS) for k, v in names.items()}


def _fdct_butterfly(d: Sequence[int]) -> list[int]:
    """libjpeg's islow forward 8-point DCT before its final descale, in exact integers.

    The DC and Nyquist outputs carry an extra ``<< CONST_BITS`` so that one descale shift fits every output: pass 1
    then descales by ``CONST_BITS - PASS1_BITS`` and pass 2 by ``CONST_BITS + PASS1_BITS``, as libjpeg does.
    """
    k = _islow_dct_constants()
    tmp0, tmp7 = d[0] + d[7], d[0] - d[7]
    tmp1, tmp6 = d[1] + d[6], d[1] - d[6]
    tmp2, tmp5 = d[2] + d[5], d[2] - d[5]
    tmp3, tmp4 = d[3] + d[4], d[3] - d[4]
    tmp10, tmp13 = tmp0 + tmp3, tmp0 - tmp3
    tmp11, tmp12 = tmp1 + tmp2, tmp1 - tmp2
    out = [0] * 8
    out[0] = (tmp10 + tmp11) << _CONST_BITS
    out[4] = (tmp10 - tmp11) << _CONST_BITS
    z1 = (tmp12 + tmp13) * k["c0541"]
    out[2] = z1 + tmp13 * k["c0765"]
    out[6] = z1 - tmp12 * k["c1847"]
    z1, z2, z3, z4 = tmp4 + tmp7, tmp5 + tmp6, tmp4 + tmp6, tmp5 + tmp7
    z5 = (z3 + z4) * k["c1175"]
    z1, z2 = -z1 * k["c0899"], -z2 * k["c2562"]
    z3, z4 = -z3 * k["c1961"] + z5, -z4 * k["c0390"] + z5
    out[7] = tmp4 * k["c0298"] + z1 + z3
    out[5] = tmp5 * k["c2053"] + z2 + z4
    out[3] = tmp6 * k["c3072"] + z2 + z3
    out[1] = tmp7 * k["c1501"] + z1 + z4
    return out


def _idct_butterfly(c: Sequence[int]) -> list[int]:
    """libjpeg's islow inverse 8-point DCT before its final descale, in exact integers."""
    k = _islow_dct_constants()
    z1 = (c[2] + c[6]) * k["c0541"]
    tmp2 = z1 - c[6] * k["c1847"]
    tmp3 = z1 + c[2] * k["c0765"]
    tmp0 = (c[0] + c[4]) << _CONST_BITS
    tmp1 = (c[0] - c[4]) << _CONST_BITS
    tmp10, tmp13 = tmp0 + tmp3, tmp0 - tmp3
    tmp11, tmp12 = tmp1 + tmp2, tmp1 - tmp2
    t0, t1, t2, t3 = c[7], c[5], c[3], c[1]
    z1, z2, z3, z4 = t0 + t3, t1 + t2, t0 + t2, t1 + t3
    z5 = (z3 + z4) * k["c1175"]
    z1, z2 = -z1 * k["c0899"], -z2 * k["c2562"]
    z3, z4 = -z3 * k["c1961"] + z5, -z4 * k["c0390"] + z5
    t0 = t0 * k["c0298"] + z1 + z3
    t1 = t1 * k["c2053"] + z2 + z4
    t2 = t2 * k["c3072"] + z2 + z3
    t3 = t3 * k["c1501"] + z1 + z4
    return [tmp10 + t3, tmp11 + t2, tmp12 + t1, tmp13 + t0, tmp13 - t0, tmp12 - t1, tmp11 - t2, tmp10 - t3]


def _butterfly_matrix(butterfly: Callable[[Sequence[int]], list[int]]) -> tuple[tuple[int, ...], ...]:
    # every stage of the butterfly is linear, so its columns are its responses to the unit vectors
    cols = [butterfly([int(i == j) for i in range(8)]) for j in range(8)]
    return tuple(tuple(cols[j][i] for j in range(8)) for i in range(8))


_FDCT = _butterfly_matrix(_fdct_butterfly)
_IDCT = _butterfly_matrix(_idct_butterfly)


def _check_quality(quality: object) -> int:
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be an integer in 1..100, got {quality!r}")
    return quality


def jpeg_quant_tables(quality: int) -> tuple[Tensor, Tensor]:
    """The luminance and chrominance quantisation tables libjpeg writes for ``quality``.

    libjpeg's ``jpeg_quality_scaling``: scale = 5000 / q below 50, 200 - 2 q from 50 on; each entry is
    ``(base * scale + 50) // 100`` clamped to 1..255 (baseline JPEG).

    Args:
        quality: JPEG quality 1..100.

    Returns:
        ``(luma, chroma)`` int64 tables in natural (row-major) order.

    Shape:
        ``(8, 8)`` each.

    Raises:
        ValueError: quality outside 1..100.
    """
    quality = _check_quality(quality)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality

    def table(base: tuple[int, ...]) -> Tensor:
        return torch.tensor([min(max((b * scale + 50) // 100, 1), 255) for b in base]).reshape(8, 8)

    return table(_LUMA_BASE), table(_CHROMA_BASE)


# Float32 holds every integer below 2**24 exactly. The transforms below keep all their partial sums under that bound:
# the first forward pass directly (|sample - 128| <= 128 times row sums <= 2**16), the other three by splitting each
# matrix into high and low 7-bit parts, M = 2**7 * hi + lo with |hi|, lo < 2**7, whose products with a pass input
# stay below 2**23 (by Parseval, any 8 inputs of a pass sum to at most about 2**16 in absolute value).
_SPLIT_BITS = 7
# The batch runs in chunks of about this many pixels through one workspace reused by every chunk. On CPU small
# chunks stay cache-resident and avoid re-faulting fresh pages (which would otherwise dominate the run time); on GPUs
# the chunk only bounds the workspace (~60 bytes per pixel).
_CPU_CHUNK_PIXELS = 1 << 18
_GPU_CHUNK_PIXELS = 1 << 24


@contextlib.contextmanager
def _exact_float32_matmul() -> Iterator[None]:
    """Full float32 GEMMs for the duration (TF32 or bfloat16 products would break the exact integer arithmetic)."""
    previous = torch.get_float32_matmul_precision()
    if previous == "highest":
        yield
        return
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def _split(mat: Tensor) -> tuple[Tensor, Tensor]:
    lo = torch.remainder(mat, 2**_SPLIT_BITS)
    return (mat - lo) / 2**_SPLIT_BITS, lo


def _transforms(device: torch.device) -> dict[str, Tensor]:
    """The islow DCT passes as float32 matrices, with their descale shifts folded in (powers of two stay exact).

    A split pass descaled by ``bits`` stacks ``hi / 2**(bits - s)`` and ``lo / 2**s``; see :func:`_descale_split`.
    """
    fdct = torch.tensor(_FDCT, dtype=torch.float64)
    idct = torch.tensor(_IDCT, dtype=torch.float64)
    s = _SPLIT_BITS

    def split(mat: Tensor, bits: int, dim: int) -> Tensor:
        hi, lo = _split(mat)
        return torch.cat([hi * 2.0 ** -(bits - s), lo * 2.0**-s], dim=dim)

    # rows: two 8-point rows per product (a 16-wide inner dimension runs ~3x faster than 8 in float32 GEMMs)
    mats = {
        "row_fdct": torch.block_diag(fdct.T, fdct.T) * 2.0 ** -(_CONST_BITS - _PASS1_BITS),
        "col_fdct": split(fdct, _CONST_BITS + _PASS1_BITS, 0),
        "col_idct": split(idct, _CONST_BITS - _PASS1_BITS, 0),
        "row_idct": split(torch.block_diag(idct.T, idct.T), _CONST_BITS + _PASS1_BITS + 3, 1),
    }
    return {k: v.to(device=device, dtype=torch.float32) for k, v in mats.items()}


def _quant_params(quality: int, device: torch.device) -> list[tuple[Tensor, Tensor, Tensor]]:
    """``(q, 4 q, 8 q)`` for the luma and chroma tables, shaped ``(8, 1, 8)`` to broadcast over image-layout blocks."""
    out = []
    for tab in jpeg_quant_tables(quality):
        q = tab.to(device=device, dtype=torch.float32).reshape(8, 1, 8)
        out.append((q, 4.0 * q, 8.0 * q))
    return out


def _descale_split(hi: Tensor, lo: Tensor, bits: int, offset: float, out: Tensor) -> Tensor:
    """libjpeg's DESCALE(2**s H + L, bits) + offset, in place, from the split products hi = H / 2**k, lo = L / 2**s.

    With k = bits - s: floor((2**s H + L + 2**(bits - 1)) / 2**bits) = floor((H + floor(L / 2**s) + 2**(k - 1)) / 2**k),
    and every intermediate is an exact float32.
    """
    k = bits - _SPLIT_BITS
    hi.add_(lo.floor_(), alpha=2.0**-k).add_(0.5 + offset)
    return torch.floor(hi, out=out)


def _code_planes(
    planes: Tensor, quant: tuple[Tensor, Tensor, Tensor], mats: dict[str, Tensor], work: Tensor, offset: float
) -> None:
    """Forward DCT, quantise, dequantise and inverse DCT of level-shifted 8-bit planes, in place.

    The coefficients stay in image layout: the value at ``(8 i + v, 8 j + u)`` is frequency ``(v, u)`` of block
    ``(i, j)``, so no block transposes are needed. Row passes are one GEMM over groups of 16 contiguous samples
    (two blocks), column passes a batched product with the 8 rows of each block row.

    Args:
        planes: sample levels minus 128, contiguous, ``H % 8 == 0`` and ``W % 16 == 0``; overwritten by the decoded
            levels minus 128 plus ``offset``, range-limited to the 8-bit levels.
        quant: the ``(q, 4 q, 8 q)`` tables of this plane.
        mats: the transform matrices of :func:`_transforms`.
        work: scratch space of at least ``3 * planes.numel()`` elements.
        offset: 128 returns levels 0..255, 0 keeps the level shift.

    Shape:
        ``planes``: ``(B, H, W)``.
    """
    b, h, w = planes.shape
    numel = planes.numel()
    q, half, div = quant
    rows = planes.view(-1, 16)
    one = work[:numel].view(-1, 16)
    two = work[numel : 3 * numel]
    cols = (b * h // 8, 8, w)
    # forward islow DCT (jfdctint.c): rows, descale by CONST_BITS - PASS1_BITS ...
    torch.mm(rows, mats["row_fdct"], out=one).add_(0.5).floor_()
    # ... then columns, descale by CONST_BITS + PASS1_BITS
    prod = torch.bmm(mats["col_fdct"].expand(cols[0], 16, 8), one.view(cols), out=two.view(cols[0], 16, w))
    z = _descale_split(prod[:, :8], prod[:, 8:], _CONST_BITS + _PASS1_BITS, 0.0, one.view(cols))
    # libjpeg-turbo quantises by reciprocal multiplication (jcdctmgr.c); for every |coef| < 2**15 and every table
    # entry that equals rounding half away from zero, floor((|coef| + 4 q) / (8 q)), checked exhaustively
    z = z.view(b, h // 8, 8, w // 8, 8)
    deq = torch.abs(z, out=planes.view(z.shape)).add_(half).div_(div).floor_().mul_(q)
    torch.copysign(deq, z, out=deq)
    # inverse islow DCT (jidctint.c): columns, descale by CONST_BITS - PASS1_BITS ...
    prod = torch.bmm(mats["col_idct"].expand(cols[0], 16, 8), deq.view(cols), out=two.view(cols[0], 16, w))
    _descale_split(prod[:, :8], prod[:, 8:], _CONST_BITS - _PASS1_BITS, 0.0, one.view(cols))
    # ... then rows, descale by CONST_BITS + PASS1_BITS + 3 (also removing the DCT's factor 8)
    prod = torch.mm(one, mats["row_idct"], out=two.view(-1, 32))
    _descale_split(prod[:, :16], prod[:, 16:], _CONST_BITS + _PASS1_BITS + 3, offset, one)
    torch.clamp(one, offset - 128.0, offset + 127.0, out=rows)  # range limit


def _rgb_to_ycc(rgb: Tensor, y: Tensor, cbcr: Tensor) -> None:
    """JFIF RGB -> Y and (Cb, Cr) minus 128, with libjpeg's 16-bit fixed point (jccolor.c), into ``y``, ``cbcr``.

    Every partial sum is an integer below 2**24 times 2**-16, so float32 computes it exactly.
    """
    r, g, b = rgb.unbind(1)
    one = 2.0**-_SCALE_BITS

    def mix(kr: float, kg: float, kb: float, bias: float, out: Tensor) -> None:
        fr, fg, fb = (_fix(abs(k), _SCALE_BITS) * (1 if k >= 0 else -1) * one for k in (kr, kg, kb))
        torch.mul(r, fr, out=out).add_(g, alpha=fg).add_(b, alpha=fb).add_(bias).floor_()

    half = 0.5
    mix(0.29900, 0.58700, 0.11400, half - 128, y)
    # Cb and Cr round with 0.5 - epsilon so that they never reach 256; the +128 offset cancels the level shift
    mix(-0.16874, -0.33126, 0.50000, half - one, cbcr[:, 0])
    mix(0.50000, -0.41869, -0.08131, half - one, cbcr[:, 1])


def _ycc_to_rgb(y: Tensor, cbcr: Tensor, out: Tensor) -> None:
    """JFIF YCbCr -> RGB levels with libjpeg's 16-bit fixed point and range limiting (jdcolor.c), into ``out``.

    ``cbcr`` holds Cb - 128 and Cr - 128.
    """
    one = 2.0**-_SCALE_BITS
    cb, cr = cbcr.unbind(1)
    k_rcr, k_bcb = _fix(1.40200, _SCALE_BITS) * one, _fix(1.77200, _SCALE_BITS) * one
    k_gcb, k_gcr = -_fix(0.34414, _SCALE_BITS) * one, -_fix(0.71414, _SCALE_BITS) * one
    r, g, b = out.unbind(1)
    # chroma arrives level-shifted (-128..127), which keeps every product below 2**24 * 2**-16: exact in float32
    torch.mul(cr, k_rcr, out=r)
    torch.mul(cb, k_gcb, out=g).add_(cr, alpha=k_gcr)
    torch.mul(cb, k_bcb, out=b)
    out.add_(0.5).floor_().add_(y).clamp_(0.0, 255.0)


def _downsample_h2v2(chroma: Tensor, out: Tensor) -> None:
    """2x2 chroma averaging with libjpeg's alternating 1, 2 rounding bias (jcsample.c h2v2_downsample)."""
    s = torch.add(chroma[..., 0::2, 0::2], chroma[..., 0::2, 1::2], out=out)
    s.add_(chroma[..., 1::2, 0::2]).add_(chroma[..., 1::2, 1::2])
    bias = torch.tensor([1.0, 2.0], dtype=s.dtype, device=s.device).repeat(s.shape[-1] // 2)
    s.add_(bias).mul_(0.25).floor_()


def _upsample_h2v2(chroma: Tensor, work: Tensor, out: Tensor) -> None:
    """libjpeg's "fancy" 2x2 upsampling: a 3/4-1/4 triangle filter with edge replication (jdsample.c), into ``out``.

    Each output is ``(3 * nearer + farther column sum + 8 or 7) >> 4`` of the column sums
    ``3 * nearer row + farther row``; the rounding bias is 8 on even output columns, 7 on odd ones. The weights sum
    to 16, so level-shifted samples give level-shifted results.

    Shape:
        ``chroma``: ``(N, C, h, w)``; ``out``: ``(N, C, 2 h, 2 w)``; ``work``: at least ``4.5 N C h w`` elements.
    """
    n, c, h, w = chroma.shape
    out5 = out.view(n, c, 2 * h, w, 2)
    if w <= 2:  # libjpeg falls back to pixel replication for such narrow images
        out.copy_(chroma.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1))
        return
    m = chroma.numel()
    near = torch.mul(chroma, 3.0, out=work[:m].view(chroma.shape))
    colsum = work[m : 3 * m].view(n, c, h, 2, w)
    torch.add(near[..., 1:, :], chroma[..., :-1, :], out=colsum[..., 1:, 0, :])  # row above
    torch.add(near[..., :-1, :], chroma[..., 1:, :], out=colsum[..., :-1, 1, :])  # row below
    torch.mul(chroma[..., 0, :], 4.0, out=colsum[..., 0, 0, :])
    torch.mul(chroma[..., -1, :], 4.0, out=colsum[..., -1, 1, :])
    colsum = colsum.view(n, c, 2 * h, w)
    near = torch.mul(colsum, 3.0, out=work[3 * m : 5 * m].view(colsum.shape)).add_(8.0)
    torch.add(near[..., 1:], colsum[..., :-1], out=out5[..., 1:, 0])  # column to the left
    torch.add(near[..., :-1], colsum[..., 1:], out=out5[..., :-1, 1])  # column to the right
    torch.add(near[..., 0], colsum[..., 0], out=out5[..., 0, 0])
    torch.add(near[..., -1], colsum[..., -1], out=out5[..., -1, 1])
    out5[..., 1].sub_(1.0)  # bias 7, not 8, on odd columns
    out.mul_(1.0 / 16.0).floor_()


def _replicate_edges(x: Tensor, h: int, w: int) -> None:
    """Fill ``x[..., h:, :]`` and ``x[..., :, w:]`` by repeating row ``h - 1`` and column ``w - 1``, in place."""
    if x.shape[-1] > w:
        x[..., :h, w:] = x[..., :h, w - 1 : w]
    if x.shape[-2] > h:
        x[..., h:, :] = x[..., h - 1 : h, :]


def _roundtrip(images: Tensor, quality: int, rounding: str, out: Tensor, scale: bool) -> None:
    """Encode and decode ``images`` chunk by chunk as PIL does, writing the decoded levels (/ 255 if ``scale``) to
    ``out``.

    Geometry, following libjpeg (jcsample.c, jcprepct.c): the image is padded by replicating its last column up to
    a multiple of 32 (16-px MCUs; a further 16 px only add blocks that are cropped again) and its last row up to an
    even height; luma rows are replicated down to a block edge, and after the 2x2 chroma averaging, so is the last
    *subsampled* chroma row. The decoder sees only the ``ceil(H/2) x ceil(W/2)`` chroma samples inside the image.
    """
    n, _, h, w = images.shape
    dev = images.device
    h2, w32 = h + h % 2, -(-w // 32) * 32
    hy, hc, wc = -(-h // 8) * 8, -(-(h2 // 2) // 8) * 8, w32 // 2
    ch, cw = (h + 1) // 2, (w + 1) // 2
    chunk = min(n, max(1, (_CPU_CHUNK_PIXELS if dev.type == "cpu" else _GPU_CHUNK_PIXELS) // (h * w)))
    mats = _transforms(dev)
    luma_q, chroma_q = _quant_params(quality, dev)

    def buffer(*shape: int) -> Tensor:
        return torch.empty(chunk, *shape, dtype=torch.float32, device=dev)

    levels, y, cfull, cdown = buffer(3, h2, w32), buffer(hy, w32), buffer(2, h2, w32), buffer(2, hc, wc)
    work = buffer(3 * hy * w32)
    up, up_work = buffer(2, 2 * ch, 2 * cw), buffer(5 * 2 * ch * cw)
    for start in range(0, n, chunk):
        c = min(chunk, n - start)
        lv, yc, cf, cd = levels[:c], y[:c], cfull[:c], cdown[:c]
        torch.mul(images[start : start + c], 255.0, out=lv[..., :h, :w])
        # validated inputs lie in [-1e-6, 1 + 1e-6], so no level leaves 0..255
        if rounding == "floor":
            lv.add_(1e-3).floor_()  # np.uint8 truncation, tolerant of float error on k / 255
        else:
            lv.round_()
        _replicate_edges(lv, h, w)
        _rgb_to_ycc(lv, yc[:, :h2], cf)
        _replicate_edges(yc, h2, w32)
        _downsample_h2v2(cf, cd[:, :, : h2 // 2])
        _replicate_edges(cd, h2 // 2, wc)
        _code_planes(yc, luma_q, mats, work[:c].view(-1), 128.0)
        _code_planes(cd.view(2 * c, hc, wc), chroma_q, mats, work[:c].view(-1), 0.0)
        _upsample_h2v2(cd[..., :ch, :cw], up_work[:c].view(-1), up[:c])
        dst = out[start : start + c]
        _ycc_to_rgb(yc[:, None, :h, :w], up[:c, :, :h, :w], dst)
        if scale:
            dst.div_(255.0)


def jpeg_roundtrip(images: Tensor, quality: int, *, rounding: Literal["floor", "nearest"] = "floor") -> Tensor:
    """Save ``images`` as baseline JPEG of ``quality`` and decode them again, as PIL does with its defaults.

    Models ``Image.fromarray(uint8).save(buf, "JPEG", quality=quality)`` followed by ``Image.open(buf)`` with the
    libjpeg-turbo that Pillow ships: JFIF YCbCr, 4:2:0 chroma subsampling (Pillow's default at every quality),
    the standard tables scaled by ``quality``, islow integer DCTs, "fancy" chroma upsampling. Huffman coding is
    lossless and left out. The result is the decoded 8-bit image / 255.

    Args:
        images: pixels in [0, 1]; any height and width (edges are padded by replication like libjpeg).
        quality: JPEG quality 1..100 (85 re-encodes like the released ImageNet-C files).
        rounding: how pixels become 8-bit levels first. ``"floor"`` (default) truncates like the benchmark's
            ``np.uint8(...)`` before saving, with a 1e-3-level tolerance so that float error on exact ``k / 255``
            values does not drop a level; ``"nearest"`` rounds.

    Returns:
        Decoded pixels, same shape, dtype and device, on the 8-bit grid ``k / 255``.

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: images not ``(N, 3, H, W)`` float in [0, 1], quality not an integer in 1..100, unknown rounding.

    Note:
        Fidelity: every stage reproduces libjpeg-turbo's integer arithmetic (islow DCTs, its quantiser, the biased
        2x2 chroma averaging, fancy upsampling, 16-bit fixed-point colour conversions), carried exactly in float32,
        so the decoded levels equal PIL's bit for bit (verified on ImageNet and CIFAR images at every quality and
        on odd sizes). Not differentiable (quantisation).

    Example:
        >>> x = torch.rand(2, 3, 32, 32)
        >>> jpeg_roundtrip(x, 85).shape
        torch.Size([2, 3, 32, 32])
    """
    check_images(images, channels=3)
    quality = _check_quality(quality)
    if rounding not in ("floor", "nearest"):
        raise ValueError(f"rounding must be 'floor' or 'nearest', got {rounding!r}")
    return _roundtrip_validated(images, quality, rounding)


def _roundtrip_validated(images: Tensor, quality: int, rounding: str, *, codec: bool = True) -> Tensor:
    out = torch.empty(images.shape, dtype=torch.float32, device=images.device)
    single = images.dtype == torch.float32  # other dtypes divide in their own precision: k / 255 correctly rounded
    codec = codec and _jpeg_codec.try_roundtrip(images, quality, rounding, out, single, _roundtrip_validated)
    if images.numel() and not codec:
        with _exact_float32_matmul():
            _roundtrip(images.detach(), quality, rounding, out, scale=single)
    return out if single else out.to(images.dtype).div_(255.0)


@PERTURBATIONS.register
def jpeg_compression(
    images: Tensor,
    severity: int,
    *,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    profile: str | None = None,
) -> Tensor:
    """JPEG compression at the benchmark quality of ``severity`` (ImageNet 25 18 15 10 7, CIFAR 80 65 58 50 40).

    Args:
        images: clean pixels in [0, 1].
        severity: 1..5.
        generator: unused; the corruption is deterministic (accepted for the common contract).
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"`` qualities; default chosen from the image size.

    Returns:
        The decoded images, same shape, dtype and device, on the 8-bit grid.

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: bad images, severity or profile.

    Note:
        Fidelity: the benchmark (and ``imagecorruptions``) round-trips a PIL image through PIL's JPEG codec;
        :func:`jpeg_roundtrip` reproduces that codec's integer arithmetic, so the outputs equal PIL's bit for bit.
        Inputs are first truncated to 8-bit levels (exact for ``k / 255`` inputs, which is what the benchmark feeds).
        ``imagecorruptions`` uses the ImageNet qualities at every size; here the CIFAR and Tiny-ImageNet profiles use
        the qualities of the original ``make_cifar_c.py`` / ``make_tinyimagenet_c.py``.
    """
    quality, _ = setup_corruption("jpeg_compression", images, severity, profile)
    return _roundtrip_validated(images, int(quality), "floor")  # images were validated by setup_corruption
