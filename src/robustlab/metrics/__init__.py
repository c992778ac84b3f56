"""Pure metric functions: no file access, no models; baselines are name-keyed tables passed as arguments."""

from __future__ import annotations

from robustlab.metrics.adversarial import attack_success_rate, robust_accuracy
from robustlab.metrics.baselines import ALEXNET_CE_NORMALISERS, ALEXNET_CLEAN_ERROR, ALEXNET_ERRORS
from robustlab.metrics.classification import accuracy, error, wilson_interval
from robustlab.metrics.corruption import (
    corruption_error,
    mean_corruption_error,
    relative_corruption_error,
    relative_mean_corruption_error,
    unnormalized_mean_corruption_error,
)
from robustlab.metrics.noise import rank_difference, robustness_slope
from robustlab.metrics.perturbation import flip_probability, flip_rate, mean_flip_rate, top5_distance

__all__ = [
    "ALEXNET_CE_NORMALISERS",
    "ALEXNET_CLEAN_ERROR",
    "ALEXNET_ERRORS",
    "accuracy",
    "attack_success_rate",
    "corruption_error",
    "error",
    "flip_probability",
    "flip_rate",
    "mean_corruption_error",
    "mean_flip_rate",
    "rank_difference",
    "relative_corruption_error",
    "relative_mean_corruption_error",
    "robust_accuracy",
    "robustness_slope",
    "top5_distance",
    "unnormalized_mean_corruption_error",
    "wilson_interval",
]
