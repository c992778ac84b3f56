"""Adversarial metrics: worst-case robust accuracy over attacks and attack success rate."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def robust_accuracy(correct: Tensor | Sequence[Tensor]) -> float:
    """Worst case over attacks: a point counts as robust only if it stays correct under every attack.

    Args:
        correct: boolean ``(A, N)`` (or a list of A tensors ``(N,)``): point n still correctly classified after
            attack a. Include the clean result as a row to count clean mistakes as non-robust.

    Returns:
        The fraction of points correct under all attacks.
    """
    rows = torch.stack([torch.as_tensor(c) for c in correct]) if not isinstance(correct, Tensor) else correct
    if rows.ndim == 1:
        rows = rows.unsqueeze(0)
    if rows.ndim != 2 or rows.shape[1] == 0:
        raise ValueError(f"correct must be (attacks, points) booleans, got shape {tuple(rows.shape)}")
    return float(rows.bool().all(dim=0).double().mean())


def attack_success_rate(clean_correct: Tensor, adversarial_correct: Tensor) -> float:
    """Among points the model got right on clean inputs, the fraction the attack made wrong (NaN if none)."""
    clean_correct, adversarial_correct = clean_correct.bool(), adversarial_correct.bool()
    if clean_correct.shape != adversarial_correct.shape:
        raise ValueError(f"shapes differ: {tuple(clean_correct.shape)} vs {tuple(adversarial_correct.shape)}")
    n = int(clean_correct.sum())
    if n == 0:
        return float("nan")
    return int((clean_correct & ~adversarial_correct).sum()) / n
