"""The Gaussian-noise study ("Unlocking Noise-Resistant Vision"): noise theory, timm architecture attributes, noise
sweeps over model zoos and their analysis."""

from __future__ import annotations

from robustlab.metrics.noise_study import DESIGN_RULES, design_rule_verdicts, grouped_stats
from robustlab.study import theory
from robustlab.study.attributes import Attributes, attribute_table, coverage, model_attributes, write_attributes_csv
from robustlab.study.noise import NoiseStudy, noise_study, parse_sigmas

__all__ = [
    "DESIGN_RULES",
    "Attributes",
    "NoiseStudy",
    "attribute_table",
    "coverage",
    "design_rule_verdicts",
    "grouped_stats",
    "model_attributes",
    "noise_study",
    "parse_sigmas",
    "theory",
    "write_attributes_csv",
]
