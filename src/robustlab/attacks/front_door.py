"""``attack(model, images, labels, method, **params)``: any registered attack by name (``robustlab.attack``)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from robustlab.attacks._registry import ATTACKS

__all__ = ["attack"]


def attack(model: nn.Module, images: Tensor, labels: Tensor, method: str, **params: Any) -> Tensor:
    """Adversarial images from the registered attack ``method`` (``"pgd"``, ``"fgsm"``, ``"autoattack"``...).

    A thin front door over :data:`robustlab.attacks.ATTACKS`: ``attack(model, x, y, "pgd", eps=8/255)`` is
    ``robustlab.attacks.pgd(model, x, y, eps=8/255)``.

    Args:
        model: maps [0, 1] pixels to logits (a robustlab Classifier normalises inside). Its mode is not changed.
        images: clean pixels in [0, 1].
        labels: true classes.
        method: a name in :data:`robustlab.attacks.ATTACKS` (see :func:`robustlab.attacks.list_attacks`).
        params: keyword arguments of the attack's function (``eps``, ``steps``, ``norm``, ``generator``...).

    Returns:
        The adversarial images, in [0, 1] and within the attack's budget.

    Shape:
        images ``(N, C, H, W)``, labels ``(N,)`` -> ``(N, C, H, W)``.

    Raises:
        ValueError: an unknown method (with close matches) or settings the attack rejects.
    """
    return ATTACKS.get(method)(model, images, labels, **params)
