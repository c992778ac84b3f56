"""Methods from the seed papers, each a module of loss/step functions that reuse ``train.fit`` and ``engine``.

- :mod:`robustlab.methods.ar2`: CAM-guided repair of a pretrained CNN against common corruptions (AR2), with
  fine-tune-only, refinement-only and AugMix baselines under the same step budget.
- :mod:`robustlab.methods.augmix`: batched, generator-driven AugMix in torch (the AugMix baseline).
"""

from __future__ import annotations

# imported for their @METHODS.register side effect
from robustlab.methods import ar2  # noqa: F401
from robustlab.methods._registry import METHODS
from robustlab.methods.ar2 import AR2Config, RepairResult, repair
from robustlab.methods.augmix import augmix

__all__ = ["METHODS", "AR2Config", "RepairResult", "augmix", "repair"]
