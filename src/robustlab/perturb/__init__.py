"""Perturbations of [0, 1] pixel tensors: corruptions, noise, occlusion."""

from __future__ import annotations

from robustlab.perturb.sweep import additive_gaussian_noise

__all__ = ["additive_gaussian_noise"]
