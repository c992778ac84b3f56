"""Adversarial attacks in [0, 1] pixel space, and the worst case over several of them.

Every attack is registered in :data:`ATTACKS` under its function name and shares one call signature::

    attack(model, images, labels, *, generator=None, **params) -> adversarial images (N, C, H, W)

so the evaluation engine can run ``pgd:eps=8/255,steps=20`` by name. ``generator`` is one ``torch.Generator``, a
list of one generator per image (an image's random start then does not depend on its batch), or None.

- :func:`fgsm`, :func:`pgd`: L-inf / L2, untargeted or targeted, cross-entropy or DLR loss (Madry et al. 2018,
  step for step as torchattacks).
- :func:`apgd`: Auto-PGD (Croce & Hein 2020), AutoAttack's APGD-CE / APGD-DLR: momentum and an adaptive step size;
  :func:`apgd_t`, AutoAttack's APGD-T: targeted DLR towards the next most likely classes in turn.
- :func:`fab_t`: FAB-T (Croce & Hein 2020), AutoAttack's minimal-perturbation boundary attack, targeted, L-inf or L2.
- :func:`square`: Square Attack (Andriushchenko et al. 2020), AutoAttack's score-based random search: no gradients,
  so it checks that robustness is not gradient masking.
- :func:`patch_fool`: Patch-Fool (Fu et al. 2022) for vision transformers; :func:`select_patches` is its
  attention-aware patch selection.
- :func:`patch_corruption_accuracy`: accuracy under random noise-patch occlusion (AFAT).
- :func:`worst_case`: an AutoAttack-style cascade, each attack only on the points still robust; :func:`autoattack`
  is AutoAttack's standard set in it (APGD-CE, APGD-T, FAB-T, Square).

Attacks never change the model's mode and take gradients with ``torch.autograd.grad`` only (parameter ``.grad``
stays as it was). They warn (AutoAttack-style) when the model is in train mode, returns probabilities, is
randomised, or gives all-zero input gradients.
"""

from __future__ import annotations

from robustlab.attacks._common import DEFAULT_EPS, LOSSES, NORMS
from robustlab.attacks._registry import ATTACKS
from robustlab.attacks.apgd import apgd, apgd_checkpoints, apgd_t
from robustlab.attacks.autoattack import autoattack
from robustlab.attacks.fab import fab_t, project_onto_hyperplane
from robustlab.attacks.front_door import attack
from robustlab.attacks.gradient import fgsm, pgd
from robustlab.attacks.losses import attack_objective, cw_loss, dlr_loss
from robustlab.attacks.occlusion import patch_corruption_accuracy
from robustlab.attacks.patch import patch_fool, patch_pixel_mask, select_patches
from robustlab.attacks.square import square, square_fraction
from robustlab.attacks.worst_case import AttackSpec, WorstCaseResult, worst_case

__all__ = [
    "ATTACKS",
    "DEFAULT_EPS",
    "LOSSES",
    "NORMS",
    "AttackSpec",
    "WorstCaseResult",
    "apgd",
    "apgd_checkpoints",
    "apgd_t",
    "attack",
    "attack_objective",
    "autoattack",
    "cw_loss",
    "dlr_loss",
    "fab_t",
    "fgsm",
    "list_attacks",
    "patch_corruption_accuracy",
    "patch_fool",
    "patch_pixel_mask",
    "pgd",
    "project_onto_hyperplane",
    "select_patches",
    "square",
    "square_fraction",
    "worst_case",
]


def list_attacks() -> list[str]:
    """Every registered attack name."""
    return ATTACKS.names()
