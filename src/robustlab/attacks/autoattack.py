"""AutoAttack's standard evaluation (Croce & Hein 2020) as one registered attack: APGD-CE, APGD-T and Square in a
cascade, each on the images the earlier ones left correctly classified.

AutoAttack's fourth attack, FAB-T, is not in robustlab, so this is the standard set without it; the name says so
wherever the result is stored (``autoattack`` with ``fab=False`` in its parameters).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab.attacks import _common as c
from robustlab.attacks._registry import ATTACKS
from robustlab.attacks.worst_case import worst_case

__all__ = ["autoattack"]


@ATTACKS.register
def autoattack(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    eps: float | None = None,
    norm: str = "linf",
    steps: int = 100,
    n_targets: int = 9,
    queries: int = 5000,
    fab: bool = False,
    generator: torch.Generator | list[torch.Generator] | None = None,
) -> Tensor:
    """AutoAttack's standard cascade without FAB-T: APGD-CE, APGD-T, then (L-inf) Square.

    Args:
        model: maps [0, 1] pixels to logits. Its mode is not changed.
        images: clean pixels in [0, 1].
        labels: true classes.
        eps: radius in [0, 1] pixel units; default 8/255 (``"linf"``) or 0.5 (``"l2"``).
        norm: ``"linf"`` (APGD-CE, APGD-T, Square) or ``"l2"`` (APGD-CE, APGD-T: robustlab's Square is L-inf
            only).
        steps: APGD iterations (AutoAttack: 100).
        n_targets: APGD-T's target classes (AutoAttack: 9; fewer when the model has fewer than 10 classes).
        queries: Square's budget (AutoAttack: 5000).
        fab: must stay False: FAB-T is not implemented, and the flag is stored with every result so that no
            number is mistaken for a full AutoAttack evaluation.
        generator: one generator, or one per image; each stage continues the images' random streams.

    Returns:
        Per image the adversarial found by the first stage that fooled the model, else the clean image.

    Shape:
        images ``(N, C, H, W)``, labels ``(N,)`` -> ``(N, C, H, W)``.

    Raises:
        ValueError: ``fab=True``, or a bad argument of one of the stages.
    """
    if fab is not False:
        raise ValueError("autoattack: FAB-T is not implemented in robustlab; run with fab=False (the default)")
    norm = c.check_choice(norm, c.NORMS, "norm")
    classes = getattr(model, "num_classes", None)
    if isinstance(classes, int):
        n_targets = min(n_targets, classes - 1)
    stages: list[tuple[str, dict]] = [
        ("apgd", {"eps": eps, "norm": norm, "steps": steps, "loss": "ce"}),
        ("apgd_t", {"eps": eps, "norm": norm, "steps": steps, "n_targets": n_targets}),
    ]
    if norm == "linf":
        stages.append(("square", {"eps": eps, "queries": queries}))
    return worst_case(model, images, labels, stages, generator=generator).adversarial
