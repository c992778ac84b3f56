"""Attack objectives: cross-entropy, AutoAttack's difference-of-logits-ratio (DLR) and the C&W margin loss.

Every objective here is *maximised* by the attack. DLR (Croce & Hein 2020, eq. 5 and its targeted form) is
invariant to shifting and rescaling the logits, so it does not saturate where cross-entropy's gradient vanishes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["attack_objective", "cw_loss", "dlr_loss", "per_sample_objective"]


def dlr_loss(logits: Tensor, labels: Tensor, target_labels: Tensor | None = None) -> Tensor:
    """Per-sample DLR loss of AutoAttack (untargeted, or targeted when ``target_labels`` is given).

    Untargeted: ``-(z_y - max_{i != y} z_i) / (z_(1) - z_(3) + 1e-12)``; targeted:
    ``-(z_y - z_t) / (z_(1) - (z_(3) + z_(4)) / 2 + 1e-12)`` where ``z_(k)`` is the k-th largest logit. Both are
    maximised by an attack and are positive exactly when the image is misclassified (reaches the target).

    Args:
        logits: model outputs.
        labels: true classes.
        target_labels: classes to reach, for the targeted variant.

    Returns:
        The loss of each sample.

    Shape:
        logits ``(N, K)``, labels ``(N,)`` -> ``(N,)``.

    Raises:
        ValueError: fewer than 3 classes (4 for the targeted variant), which the denominator needs.
    """
    need = 3 if target_labels is None else 4
    if logits.ndim != 2 or logits.shape[1] < need:
        kind = "targeted DLR" if target_labels is not None else "DLR"
        raise ValueError(f"{kind} needs logits (N, K) with K >= {need}, got shape {tuple(logits.shape)}; use loss='ce'")
    ordered = logits.sort(dim=1).values
    true = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
    if target_labels is None:
        top_is_true = ordered[:, -1] == true
        other = torch.where(top_is_true, ordered[:, -2], ordered[:, -1])
        return -(true - other) / (ordered[:, -1] - ordered[:, -3] + 1e-12)
    target = logits.gather(1, target_labels.unsqueeze(1)).squeeze(1)
    return -(true - target) / (ordered[:, -1] - 0.5 * (ordered[:, -3] + ordered[:, -4]) + 1e-12)


def cw_loss(logits: Tensor, labels: Tensor, target_labels: Tensor | None = None) -> Tensor:
    """Per-sample Carlini-Wagner margin loss, the objective of "C&W-inf" PGD (Carlini & Wagner 2017, f_6, kappa=inf).

    Untargeted: ``max_{i != y} z_i - z_y``; targeted: ``z_t - max_{i != t} z_i``. Unlike cross-entropy it does not
    saturate on confidently classified points, and unlike DLR it is not rescaled. Positive exactly when the image
    is misclassified (reaches the target).

    Args:
        logits: model outputs.
        labels: true classes.
        target_labels: classes to reach, for the targeted variant.

    Returns:
        The loss of each sample.

    Shape:
        logits ``(N, K)``, labels ``(N,)`` -> ``(N,)``.

    Raises:
        ValueError: fewer than 2 classes.
    """
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"the C&W margin loss needs logits (N, K) with K >= 2, got shape {tuple(logits.shape)}")
    anchor = labels if target_labels is None else target_labels
    own = logits.gather(1, anchor.unsqueeze(1)).squeeze(1)
    others = logits.scatter(1, anchor.unsqueeze(1), float("-inf")).amax(dim=1)
    return others - own if target_labels is None else own - others


def per_sample_objective(logits: Tensor, labels: Tensor, loss: str, target_labels: Tensor | None = None) -> Tensor:
    """The per-sample objective an attack maximises (:func:`attack_objective` is its batch mean).

    Args:
        logits: model outputs ``(N, K)``.
        labels: true classes ``(N,)``.
        loss: ``"ce"`` (targeted: minus the cross-entropy to the target), ``"dlr"`` or ``"cw"``.
        target_labels: classes to reach ``(N,)`` for a targeted attack.

    Returns:
        One value per sample, shape ``(N,)``.

    Raises:
        ValueError: DLR or C&W with fewer classes than it needs.
    """
    if loss == "ce":
        if target_labels is None:
            return F.cross_entropy(logits, labels, reduction="none")
        return -F.cross_entropy(logits, target_labels, reduction="none")
    if loss == "cw":
        return cw_loss(logits, labels, target_labels)
    return dlr_loss(logits, labels, target_labels)


def attack_objective(logits: Tensor, labels: Tensor, loss: str, target_labels: Tensor | None = None) -> Tensor:
    """The scalar an attack maximises: the batch mean of the per-sample objective.

    The mean (not the sum) matches ``nn.CrossEntropyLoss()`` in Madry et al. and torchattacks; sign steps and
    normalised L2 steps do not depend on the gradient's scale, so each sample's step is independent of its batch.

    Args:
        logits: model outputs ``(N, K)``.
        labels: true classes ``(N,)``.
        loss: ``"ce"`` (cross-entropy; targeted: minus the cross-entropy to the target), ``"dlr"`` or ``"cw"``.
        target_labels: classes to reach ``(N,)`` for a targeted attack.

    Returns:
        A scalar tensor.

    Shape:
        logits ``(N, K)``, labels and target_labels ``(N,)`` -> ``()``.

    Raises:
        ValueError: DLR or C&W with fewer classes than it needs (see :func:`dlr_loss`, :func:`cw_loss`).
    """
    if loss == "ce":  # the fused mean, whose rounding torchattacks' iterates are compared against
        if target_labels is None:
            return F.cross_entropy(logits, labels)
        return -F.cross_entropy(logits, target_labels)
    return per_sample_objective(logits, labels, loss, target_labels).mean()
