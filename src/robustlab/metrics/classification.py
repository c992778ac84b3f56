"""Plain classification metrics on logits or predicted labels."""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from robustlab._checks import check_labels


def _predictions(outputs: Tensor, n: int | None = None) -> Tensor:
    if not isinstance(outputs, Tensor):
        raise ValueError(f"expected logits (N, K) or predictions (N,) as a tensor, got {type(outputs).__name__}")
    if outputs.ndim == 2:
        if outputs.is_floating_point() and outputs.numel() and bool((outputs >= 0).all()):
            sums = outputs.sum(dim=1)
            if torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
                warnings.warn("outputs look like probabilities (rows sum to 1); metrics take logits — argmax is "
                              "unaffected, but losses are", stacklevel=3)  # fmt: skip
        return outputs.argmax(dim=1)
    if outputs.ndim == 1 and not outputs.is_floating_point():
        return outputs
    raise ValueError(f"expected logits (N, K) or integer predictions (N,), got shape {tuple(outputs.shape)}")


def accuracy(outputs: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy.

    Args:
        outputs: logits ``(N, K)`` or predicted labels ``(N,)``.
        labels: true labels ``(N,)`` int64.

    Returns:
        The fraction correct (NaN for an empty batch).
    """
    predictions = _predictions(outputs)
    check_labels(labels, predictions.shape[0])
    if labels.numel() == 0:
        return float("nan")
    return float((predictions == labels.to(predictions.device)).double().mean())


def error(outputs: Tensor, labels: Tensor) -> float:
    """Top-1 error = 1 − :func:`accuracy`."""
    return 1.0 - accuracy(outputs, labels)


def wilson_interval(accuracy: float, n: int, *, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of an accuracy measured on ``n`` independent samples (95 % by default).

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 % or 100 %, which matters for
    robust accuracies near zero and for small ``n``.

    Args:
        accuracy: the observed fraction correct, in [0, 1].
        n: how many samples it was measured on.
        z: the standard-normal quantile of the confidence level (1.96 for 95 %).

    Returns:
        ``(low, high)``, fractions with ``low <= accuracy <= high``.

    Raises:
        ValueError: ``n < 1`` or an accuracy outside [0, 1].

    Example:
        >>> [round(v, 4) for v in wilson_interval(0.5, 10)]
        [0.2366, 0.7634]
    """
    if n < 1:
        raise ValueError(f"a confidence interval needs n >= 1 samples, got n={n}")
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must be a fraction in [0, 1], got {accuracy!r} (divide percentages by 100)")
    z2 = z * z
    centre = (accuracy + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(accuracy * (1 - accuracy) / n + z2 / (4 * n * n))
    # clamped to the value as well: at 0 % or 100 % rounding can leave a bound a hair past it
    return min(accuracy, max(0.0, centre - half)), max(accuracy, min(1.0, centre + half))
