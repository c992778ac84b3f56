"""The perturbation registry: corruptions, sequences, occlusion and noise, keyed by function name."""

from __future__ import annotations

from robustlab._registry import Registry

PERTURBATIONS = Registry("perturbation")
