"""Blur corruptions: Gaussian, defocus and motion blur (:mod:`._kernel`), zoom blur (:mod:`._zoom`) and glass blur
(:mod:`._glass`).

Each corruption has two layers: the registered ``(images, severity)`` function that looks up the benchmark
parameters and draws the random ones, and a public ``apply_*`` core that takes every parameter explicitly (angles,
pixel offsets, zoom factors), so that perturbation sequences (ImageNet-P) can replay it with per-frame parameters.
Random numbers come from ``generator`` through :mod:`robustlab.rng` (drawn on CPU, then moved), one draw per sample
from that sample's generator when a list is given, so CPU and CUDA agree and a sample's output does not depend on
its batch.

Fidelity: the recipes follow the original benchmark code, hendrycks/robustness ``make_imagenet_c.py``,
``make_cifar_c.py`` and ``make_tinyimagenet_c.py`` (whose blur functions differ only in parameters and in glass
blur's loop bounds, which use the image size). Where ``imagecorruptions`` 1.1.2 departs from that code it is named
in the function's docstring. The random streams differ from NumPy's global RNG, so random corruptions match the
reference in distribution, not pixel for pixel. Results are not quantised to uint8 at the end.
"""

from __future__ import annotations

from robustlab.perturb.blur._glass import apply_glass_blur, glass_blur, glass_blur_offsets, glass_blur_sources
from robustlab.perturb.blur._kernel import (
    apply_defocus_blur,
    apply_gaussian_blur,
    apply_motion_blur,
    defocus_blur,
    defocus_kernel,
    gaussian_blur,
    motion_blur,
)
from robustlab.perturb.blur._zoom import apply_zoom_blur, zoom_blur

__all__ = [
    "apply_defocus_blur",
    "apply_gaussian_blur",
    "apply_glass_blur",
    "apply_motion_blur",
    "apply_zoom_blur",
    "defocus_blur",
    "defocus_kernel",
    "gaussian_blur",
    "glass_blur",
    "glass_blur_offsets",
    "glass_blur_sources",
    "motion_blur",
    "zoom_blur",
]
