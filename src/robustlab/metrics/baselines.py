"""Baseline tables for normalised corruption metrics, keyed by corruption name.

Source: hendrycks/robustness (ImageNet-C README and test code) as collected in shared/REFERENCE.md: AlexNet top-1
error on ImageNet-C, per severity 1..5, and its severity-averaged value (the CE normaliser). JPEG's per-severity
values are not published in code; its normaliser is.
"""

from __future__ import annotations

from types import MappingProxyType

# severity-averaged AlexNet error = the CE denominator / 5
ALEXNET_CE_NORMALISERS = MappingProxyType({
    "gaussian_noise": 0.886428,
    "shot_noise": 0.894468,
    "impulse_noise": 0.922640,
    "defocus_blur": 0.819880,
    "glass_blur": 0.826268,
    "motion_blur": 0.785948,
    "zoom_blur": 0.798360,
    "snow": 0.866816,
    "frost": 0.826572,
    "fog": 0.819324,
    "brightness": 0.564592,
    "contrast": 0.853204,
    "elastic_transform": 0.646056,
    "pixelate": 0.717840,
    "jpeg_compression": 0.606500,
})  # fmt: skip

# AlexNet top-1 error per severity 1..5 (jpeg_compression not published)
ALEXNET_ERRORS = MappingProxyType({
    "gaussian_noise": (0.69528, 0.82542, 0.93554, 0.98138, 0.99452),
    "shot_noise": (0.71224, 0.85108, 0.93574, 0.98182, 0.99146),
    "impulse_noise": (0.78374, 0.89808, 0.94870, 0.98720, 0.99548),
    "defocus_blur": (0.65624, 0.73202, 0.85036, 0.91364, 0.94714),
    "glass_blur": (0.64308, 0.75054, 0.88806, 0.91622, 0.93344),
    "motion_blur": (0.58430, 0.70048, 0.82108, 0.89750, 0.92638),
    "zoom_blur": (0.70008, 0.76992, 0.80784, 0.84198, 0.87198),
    "snow": (0.71726, 0.88392, 0.86468, 0.91870, 0.94952),
    "frost": (0.61390, 0.79734, 0.88790, 0.89942, 0.93430),
    "fog": (0.67474, 0.76050, 0.84378, 0.87260, 0.94500),
    "brightness": (0.45140, 0.48502, 0.54048, 0.62166, 0.72440),
    "contrast": (0.64548, 0.76150, 0.88874, 0.97760, 0.99270),
    "elastic_transform": (0.52596, 0.70116, 0.55686, 0.64076, 0.80554),
    "pixelate": (0.52218, 0.54620, 0.73728, 0.87092, 0.91262),
})  # fmt: skip

# torchvision AlexNet, ImageNet val top-1 error (56.52 % top-1)
ALEXNET_CLEAN_ERROR = 0.4348
