"""The papers' methods (AR2, AFAT, A3, A-TPT), each a module of loss/step functions reusing ``train.fit``, ``engine``.

- :mod:`robustlab.methods.ar2`: CAM-guided repair of a pretrained CNN against common corruptions (AR2), with
  fine-tune-only, refinement-only and AugMix baselines under the same step budget.
- :mod:`robustlab.methods.afat`: adversarial feature alignment for vision transformers (AFAT): a learned
  patch-corruption model trained against feature alignment, with random-selection / PatchDrop / CE ablations.
- :mod:`robustlab.methods.a3`: A3 (reconstructed), a plug-in activation amplification / attenuation
  module with contrastive and ranking losses on amplified negatives, for adversarial training.
- :mod:`robustlab.methods.augmix`: batched, generator-driven AugMix in torch (the AugMix baseline).
- :mod:`robustlab.methods.atpt`: A-TPT test-time prompt tuning of CLIP with TPT / R-TPT / zero-shot baselines;
  :mod:`robustlab.methods.atpt_attacks`: the paper's PGD, its stale-prompt variant and an adaptive EOT attack.
"""

from __future__ import annotations

# imported for their @METHODS.register side effect
from robustlab.methods import a3, afat, ar2  # noqa: F401
from robustlab.methods._registry import METHODS
from robustlab.methods.a3 import A3Config, A3LossConfig, attach, detach, train_a3
from robustlab.methods.afat import AFATConfig, AFATLoss, AFATResult, train_afat
from robustlab.methods.ar2 import AR2Config, RepairResult, repair
from robustlab.methods.atpt import TestTimeTuner, TTAConfig, TTAResult, tta_config
from robustlab.methods.atpt_attacks import (
    TTAAttackConfig,
    TTAOutcome,
    adaptive_pgd,
    evaluate_tta,
    evaluate_tta_dataset,
    zero_shot_pgd,
)
from robustlab.methods.augmix import augmix

__all__ = [
    "METHODS",
    "A3Config",
    "A3LossConfig",
    "AFATConfig",
    "AFATLoss",
    "AFATResult",
    "AR2Config",
    "RepairResult",
    "TTAAttackConfig",
    "TTAConfig",
    "TTAOutcome",
    "TTAResult",
    "TestTimeTuner",
    "adaptive_pgd",
    "attach",
    "augmix",
    "detach",
    "evaluate_tta",
    "evaluate_tta_dataset",
    "repair",
    "train_a3",
    "train_afat",
    "tta_config",
    "zero_shot_pgd",
]
