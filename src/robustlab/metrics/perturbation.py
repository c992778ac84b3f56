"""Perturbation-stability metrics of ImageNet-P / CIFAR-P: flip probability, flip rate, top-5 distance.

Each item is a sequence of T frames. Noise perturbations compare every frame with the first; temporal ones
(blur, weather, brightness, geometry) compare consecutive frames (shared/REFERENCE.md). Rates are fractions.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from robustlab._registry import close_matches_message


def _reference_frames(values: Tensor, noise: bool) -> tuple[Tensor, Tensor]:
    if values.shape[1] < 2:
        raise ValueError(f"sequences need at least 2 frames, got shape {tuple(values.shape)}")
    later = values[:, 1:]
    reference = values[:, :1].expand_as(later) if noise else values[:, :-1]
    return reference, later


def flip_fractions(predictions: Tensor, *, noise: bool) -> Tensor:
    """Per sequence, the fraction of frames 2..T whose prediction differs from the reference frame.

    Args:
        predictions: predicted labels ``(N, T)``.
        noise: compare with the first frame (noise) or the previous one (temporal).

    Returns:
        ``(N,)`` float fractions.
    """
    if predictions.ndim != 2:
        raise ValueError(f"predictions must be (N, T) labels, got {tuple(predictions.shape)}")
    reference, later = _reference_frames(predictions, noise)
    return (reference != later).double().mean(dim=1)


def top5_distances(logits: Tensor, *, noise: bool) -> Tensor:
    """Per sequence, the mean top-5 distance over frame pairs (see :func:`top5_distance`); ``(N,)`` floats."""
    if logits.ndim != 3 or logits.shape[-1] < 5:
        raise ValueError(f"logits must be (N, T, K) with K >= 5, got {tuple(logits.shape)}")
    reference, later = _reference_frames(logits, noise)
    top5 = reference.topk(5, dim=-1).indices  # (N, T-1, 5) classes in reference order
    # new 0-based rank of every class: position in the stable descending sort of the later frame
    order = torch.sort(later, dim=-1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order))
    new_pos = ranks.gather(-1, top5).clamp(max=5)
    old_pos = torch.arange(5, device=logits.device)
    return (new_pos - old_pos).abs().sum(dim=-1).double().mean(dim=1)


def flip_probability(predictions: Tensor, *, noise: bool) -> float:
    """Mean over sequences and frames 2..T of [prediction changed against the reference frame].

    Args:
        predictions: predicted labels ``(N, T)``, or logits ``(N, T, K)``.
        noise: True for noise perturbations (compare with the first frame), False for temporal ones (previous).

    Returns:
        The flip probability (all sequences have T frames, so the mean of per-sequence means is the global mean).
    """
    if predictions.ndim == 3:
        predictions = predictions.argmax(dim=-1)
    if predictions.ndim != 2:
        raise ValueError(f"predictions must be (N, T) labels or (N, T, K) logits, got {tuple(predictions.shape)}")
    return float(flip_fractions(predictions, noise=noise).mean())


def top5_distance(logits: Tensor, *, noise: bool) -> float:
    """ImageNet-P's top-5 distance, averaged over sequences and frame pairs.

    For each pair (reference frame, frame), the classes ranked 1..5 on the reference frame are looked up on the
    other frame; the distance sums |old position − min(new position, 5)| over those five (positions 0-based), so it
    is 0 when the top-5 list is unchanged.

    Args:
        logits: ``(N, T, K)`` scores, K >= 5.
        noise: as :func:`flip_probability`.
    """
    return float(top5_distances(logits, noise=noise).mean())


def flip_rate(probability: float, baseline_probability: float) -> float:
    """FR = FP(model) / FP(baseline)."""
    if baseline_probability <= 0:
        raise ValueError(f"baseline flip probability must be > 0, got {baseline_probability}")
    return probability / baseline_probability


def mean_flip_rate(probabilities: Mapping[str, float], baseline: Mapping[str, float] | None = None) -> float:
    """mFR over the given perturbations; without a baseline table, the raw mean flip probability.

    The AlexNet flip probabilities are not published in code, so ``baseline=None`` is the honest default: report it
    as "mean flip probability", not as mFR.
    """
    if not probabilities:
        raise ValueError("no flip probabilities given")
    if baseline is None:
        return sum(probabilities.values()) / len(probabilities)
    for name in probabilities:
        if name not in baseline:
            raise ValueError(close_matches_message("baseline perturbation", name, list(baseline)))
    return sum(flip_rate(p, baseline[name]) for name, p in probabilities.items()) / len(probabilities)
