"""AutoAttack's standard evaluation (Croce & Hein 2020) as one registered attack: APGD-CE, APGD-T, FAB-T and
Square in a cascade, each on the images the earlier ones left correctly classified.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab.attacks import _common as c
from robustlab.attacks._registry import ATTACKS
from robustlab.attacks.worst_case import worst_case
from robustlab.rng import Generators

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
    fab: bool = True,
    generator: Generators = None,
) -> Tensor:
    """AutoAttack's standard cascade: APGD-CE, APGD-T, FAB-T, then Square (L-inf only).

    Args:
        model: maps [0, 1] pixels to logits. Its mode is not changed.
        images: clean pixels in [0, 1].
        labels: true classes.
        eps: radius in [0, 1] pixel units; default 8/255 (``"linf"``) or 0.5 (``"l2"``).
        norm: ``"linf"`` (all four) or ``"l2"`` (APGD-CE, APGD-T and FAB-T: robustlab's Square is L-inf only, so
            the L2 cascade lacks AutoAttack's L2 Square).
        steps: APGD and FAB iterations (AutoAttack: 100).
        n_targets: target classes of APGD-T and FAB-T (AutoAttack: 9; fewer when the model has fewer than 10
            classes). APGD-T is left out for fewer than 4 classes (its loss needs them).
        queries: Square's budget (AutoAttack: 5000).
        fab: run FAB-T (False leaves it out, as AutoAttack's ``version='rand'`` does with its own set).
        generator: one generator, or one per image; each stage continues the images' random streams.

    Returns:
        Per image the adversarial found by the first stage that fooled the model, else the clean image.

    Shape:
        images ``(N, C, H, W)``, labels ``(N,)`` -> ``(N, C, H, W)``.

    Raises:
        ValueError: a bad argument of one of the stages.
    """
    norm = c.check_choice(norm, c.NORMS, "norm")
    if not isinstance(fab, bool):
        raise ValueError(f"fab must be True or False, got {fab!r}")
    classes = c.model_classes(model)
    if classes is None and isinstance(images, Tensor) and images.ndim == 4 and images.shape[0]:
        with torch.no_grad():
            classes = int(c.check_model(model, "autoattack")(c.as_normal_tensor(images[:1])).shape[1])
    if classes is not None:
        n_targets = min(n_targets, classes - 1)
    stages: list[tuple[str, dict]] = [("apgd", {"eps": eps, "norm": norm, "steps": steps, "loss": "ce"})]
    if classes is None or classes >= 4:  # the targeted DLR loss needs 4 classes
        stages.append(("apgd_t", {"eps": eps, "norm": norm, "steps": steps, "n_targets": n_targets}))
    if fab and (classes is None or classes >= 2):
        stages.append(("fab_t", {"eps": eps, "norm": norm, "steps": steps, "n_targets": n_targets}))
    if norm == "linf":
        stages.append(("square", {"eps": eps, "queries": queries}))
    return worst_case(model, images, labels, stages, generator=generator).adversarial
