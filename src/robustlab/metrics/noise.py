"""Noise-study metrics ("Unlocking Noise-Resistant Vision"): robustness slope and rank difference across models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def robustness_slope(sigmas: Sequence[float], accuracies: Sequence[float]) -> float:
    """Least-squares slope of accuracy against noise σ (negative: accuracy falls as noise grows).

    Raises:
        ValueError: fewer than two distinct σ, or lengths that differ.
    """
    x = np.asarray(sigmas, dtype=np.float64)
    y = np.asarray(accuracies, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"sigmas and accuracies must be equal-length lists, got {x.shape} and {y.shape}")
    if len(np.unique(x)) < 2:
        raise ValueError("a slope needs at least two distinct noise levels")
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / (xc * xc).sum())


def _ranks(scores: Mapping[str, float]) -> dict[str, int]:
    # competition ranking ("1224"): rank 1 is the best score, ties share the better rank
    values = sorted(scores.values(), reverse=True)
    return {name: 1 + values.index(score) for name, score in scores.items()}


def rank_difference(clean: Mapping[str, float], shifted: Mapping[str, float]) -> dict[str, int]:
    """Per model: rank on clean data minus rank under the shift (timm's convention: positive = moved up).

    Args:
        clean: model -> clean accuracy.
        shifted: model -> accuracy under the shift (the same models).

    Raises:
        ValueError: the two tables hold different models.
    """
    if set(clean) != set(shifted):
        raise ValueError(f"models differ: only clean {sorted(set(clean) - set(shifted))}, "
                         f"only shifted {sorted(set(shifted) - set(clean))}")  # fmt: skip
    clean_rank, shifted_rank = _ranks(clean), _ranks(shifted)
    return {name: clean_rank[name] - shifted_rank[name] for name in clean}
