"""Plain classification metrics on logits or predicted labels."""

from __future__ import annotations

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
