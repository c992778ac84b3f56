"""Training: :func:`fit`, the one training loop (AMP, checkpoint + resume, time budget, DDP under torchrun).

Methods (AR2, AFAT, A3) plug in through ``fit(..., loss_fn=...)`` rather than writing loops of their own.
"""

from __future__ import annotations

from robustlab.train import distributed
from robustlab.train.augment import apply_crop_flip, random_crop_flip, sample_crop_flip_params
from robustlab.train.checkpoint import load_checkpoint
from robustlab.train.config import FitConfig
from robustlab.train.fit import FitResult, create_optimizer, cross_entropy_loss, fit, lr_at

__all__ = [
    "FitConfig",
    "FitResult",
    "apply_crop_flip",
    "create_optimizer",
    "cross_entropy_loss",
    "distributed",
    "fit",
    "load_checkpoint",
    "lr_at",
    "random_crop_flip",
    "sample_crop_flip_params",
]
