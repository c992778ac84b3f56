"""Weather corruptions of the common-corruption benchmarks: snow, frost, fog and spatter, one module each.

Each corruption is split in two, as kornia does: the registered function (``snow``, ``frost``, ``fog``,
``spatter``) looks up the severity parameters and draws the random inputs from the per-sample generators; the public
``apply_*`` core takes those inputs explicitly, so perturbation sequences (ImageNet-P) can replay them with
per-frame parameters. Every image operation runs batched on the images' device; the OpenCV steps of the originals
live in :mod:`robustlab.perturb._cv`.

Source of the recipes: hendrycks/robustness, ``ImageNet-C/create_c/make_imagenet_c.py`` (224 px),
``make_cifar_c.py`` (32 px) and ``make_tinyimagenet_c.py`` (64 px). Where ``imagecorruptions`` 1.1.2 departs from
them, the original is followed and the difference is noted in the function's docstring.
"""

from __future__ import annotations

from robustlab.perturb.weather._fog import apply_fog, fog, plasma_fractal
from robustlab.perturb.weather._frost import apply_frost, frost, frost_overlays
from robustlab.perturb.weather._snow import apply_snow, snow
from robustlab.perturb.weather._spatter import apply_spatter, spatter

__all__ = [
    "apply_fog",
    "apply_frost",
    "apply_snow",
    "apply_spatter",
    "fog",
    "frost",
    "frost_overlays",
    "plasma_fractal",
    "snow",
    "spatter",
]
