"""Pure tensor metrics on explanation and attention maps: similarity, overlap and smoothness.

No models here (see :mod:`robustlab.explain.stability` for the convenience functions that run them).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _unit_scale(x: Tensor, dim: int) -> Tensor:
    # cosine is scale invariant; dividing by the largest magnitude first keeps tiny maps (randomly initialised
    # heads give ~1e-9) from underflowing in the squared norms
    top = x.abs().amax(dim=dim, keepdim=True)
    return x / torch.where(top > 0, top, torch.ones_like(top))


def _cosine(a: Tensor, b: Tensor, dim: int) -> Tensor:
    a, b = _unit_scale(a, dim), _unit_scale(b, dim)
    norms = a.norm(dim=dim) * b.norm(dim=dim)
    dot = (a * b).sum(dim=dim)
    return torch.where(norms > 0, dot / torch.where(norms > 0, norms, torch.ones_like(norms)), torch.zeros_like(dot))


def _pair(a: object, b: object, what: str, min_ndim: int = 2) -> tuple[Tensor, Tensor]:
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise ValueError(f"{what} takes two torch.Tensors, got {type(a).__name__} and {type(b).__name__}")
    if a.shape != b.shape:
        raise ValueError(f"{what}: both inputs need the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.ndim < min_ndim:
        raise ValueError(f"{what}: inputs need at least {min_ndim} dimensions (a batch axis first), got {a.ndim}")
    if not a.is_floating_point() or not b.is_floating_point():
        raise ValueError(f"{what}: inputs must be floating point, got {a.dtype} and {b.dtype}")
    return a, b


def map_cosine(maps_a: Tensor, maps_b: Tensor) -> Tensor:
    """Cosine similarity of two batches of maps, each map flattened: ``<a, b> / (|a| |b|)``.

    A map of zeros has similarity 0 with anything.

    Shape:
        ``(N, ...)`` pair -> ``(N,)``.

    Raises:
        ValueError: different shapes, fewer than 2 dimensions, non-floating tensors.
    """
    a, b = _pair(maps_a, maps_b, "map_cosine")
    return _cosine(a.flatten(1), b.flatten(1), dim=1)


def attention_cosine(clean: Tensor, perturbed: Tensor, *, average: bool = False) -> Tensor:
    """Attention stability (AFAT, Figs. 3-4): cosine similarity of clean and perturbed attention maps.

    Computed for each image, layer and head over the ``h x w`` map (from
    :func:`robustlab.explain.attention_maps`); AFAT reports the average over layers and heads per image.

    Args:
        clean: attention maps of the clean images.
        perturbed: attention maps of the perturbed images.
        average: average over layers and heads.

    Returns:
        Cosine similarities.

    Shape:
        ``(N, L, heads, h, w)`` pair -> ``(N, L, heads)``, or ``(N,)`` with ``average=True``.

    Raises:
        ValueError: shapes that differ or are not 5-dimensional.
    """
    a, b = _pair(clean, perturbed, "attention_cosine")
    if a.ndim != 5:
        raise ValueError(f"attention maps must have shape (N, L, heads, h, w), got {tuple(a.shape)}")
    cos = _cosine(a.flatten(3), b.flatten(3), dim=3)
    return cos.mean(dim=(1, 2)) if average else cos


def topk_iou(maps_a: Tensor, maps_b: Tensor, *, fraction: float = 0.1) -> Tensor:
    """Intersection over union of the top-``fraction`` pixels of two maps.

    Each map (flattened per image) marks its ``k = ceil(fraction * P)`` largest pixels, ``P`` pixels per map;
    the score is ``|top_a & top_b| / |top_a | top_b|``. Ties at the threshold are broken by
    :func:`torch.topk`'s order.

    Args:
        maps_a: first maps.
        maps_b: second maps, same shape.
        fraction: share of pixels kept, in ``(0, 1]``.

    Returns:
        IoU in [0, 1] per image (1 for identical maps, 0 for disjoint top sets).

    Shape:
        ``(N, ...)`` pair -> ``(N,)``.

    Raises:
        ValueError: different shapes, fewer than 2 dimensions, ``fraction`` outside ``(0, 1]``.
    """
    a, b = _pair(maps_a, maps_b, "topk_iou")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}")
    a, b = a.detach().flatten(1), b.detach().flatten(1)
    k = max(1, math.ceil(fraction * a.shape[1]))
    top_a = torch.zeros_like(a, dtype=torch.bool).scatter_(1, a.topk(k, dim=1).indices, True)
    top_b = torch.zeros_like(b, dtype=torch.bool).scatter_(1, b.topk(k, dim=1).indices, True)
    intersection = (top_a & top_b).sum(dim=1)
    union = (top_a | top_b).sum(dim=1)
    return intersection.to(maps_a.dtype) / union.to(maps_a.dtype)


def total_variation(maps: Tensor) -> Tensor:
    """Anisotropic total variation of each map (A-TPT).

    ``TV(A) = sum_{u,v} |A[u+1, v] - A[u, v]| + sum_{u,v} |A[u, v+1] - A[u, v]|`` over the last two axes
    (rows ``u``, columns ``v``), summed over any channel axis. Not normalised by the map size, as in the paper,
    so compare maps of equal size and scale (e.g. min-max scaled maps).

    Shape:
        ``(N, h, w)`` or ``(N, C, h, w)`` -> ``(N,)``.

    Raises:
        ValueError: other ranks or a non-floating tensor.
    """
    if not isinstance(maps, Tensor) or maps.ndim not in (3, 4) or not maps.is_floating_point():
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"total_variation takes floating maps of shape (N, h, w) or (N, C, h, w), got {shape}")
    rows = (maps[..., 1:, :] - maps[..., :-1, :]).abs().flatten(1).sum(dim=1)
    cols = (maps[..., :, 1:] - maps[..., :, :-1]).abs().flatten(1).sum(dim=1)
    return rows + cols
