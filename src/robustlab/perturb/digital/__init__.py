"""Digital corruptions: brightness, contrast, saturate (:mod:`._color`), pixelate (:mod:`._pixelate`) and elastic
transform (:mod:`._elastic`).

Each corruption has two layers: the registered ``(images, severity)`` function that looks up the benchmark
parameters (and draws the random ones), and a public ``apply_*`` core that takes the parameters themselves, so that
perturbation sequences (ImageNet-P style) can reuse it with per-frame values. :func:`rgb_to_hsv` and
:func:`hsv_to_rgb` are batched twins of scikit-image's ``rgb2hsv`` / ``hsv2rgb``, which the original benchmark uses
for brightness and saturate.

Fidelity: every recipe follows hendrycks/robustness ``make_imagenet_c.py`` / ``make_cifar_c.py`` /
``make_tinyimagenet_c.py``; where the ``imagecorruptions`` package departs from it, the function's docstring says so.
"""

from __future__ import annotations

from robustlab.perturb.digital._color import (
    apply_brightness,
    apply_contrast,
    apply_saturate,
    brightness,
    contrast,
    hsv_to_rgb,
    rgb_to_hsv,
    saturate,
)
from robustlab.perturb.digital._elastic import apply_elastic_transform, elastic_transform
from robustlab.perturb.digital._pixelate import apply_pixelate, pixelate

__all__ = [
    "apply_brightness",
    "apply_contrast",
    "apply_elastic_transform",
    "apply_pixelate",
    "apply_saturate",
    "brightness",
    "contrast",
    "elastic_transform",
    "hsv_to_rgb",
    "pixelate",
    "rgb_to_hsv",
    "saturate",
]
