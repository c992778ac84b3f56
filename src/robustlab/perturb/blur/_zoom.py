"""Zoom blur: the mean of the image and its centre zooms.

Fidelity: the recipes follow hendrycks/robustness ``make_imagenet_c.py``, ``make_cifar_c.py`` and
``make_tinyimagenet_c.py``; where ``imagecorruptions`` 1.1.2 departs from that code it is named in the function's
docstring.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor

from robustlab.perturb._common import setup_corruption, work_dtype
from robustlab.perturb._filters import clipped_zoom
from robustlab.perturb._registry import PERTURBATIONS
from robustlab.rng import Generators

__all__ = ["apply_zoom_blur", "zoom_blur"]

# --------------------------------------------------------------------------------------------- zoom blur


def apply_zoom_blur(images: Tensor, zooms: Sequence[float] | np.ndarray | Tensor) -> Tensor:
    """Zoom blur: the mean of the image and its centre zooms by each factor in ``zooms``, clipped to [0, 1].

    Each zoom crops the central ``ceil(H / z) x ceil(W / z)`` pixels, enlarges them by ``z`` with linear
    interpolation on SciPy's grid (``scipy.ndimage.zoom(order=1)``: output ``i`` samples input
    ``i * (in - 1) / (out - 1)``, output length ``round(crop * z)``) and trims the result back to the centre
    ``H x W``.

    Args:
        images: pixels in [0, 1].
        zooms: zoom factors >= 1 (the same for the whole batch).

    Returns:
        Blurred pixels in [0, 1].

    Shape:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``.

    Raises:
        ValueError: a zoom factor below 1.
    """
    factors = [float(z) for z in (zooms.tolist() if isinstance(zooms, (Tensor, np.ndarray)) else zooms)]
    if any(z < 1 for z in factors):
        raise ValueError(f"zoom factors must be >= 1, got {factors}")
    work = work_dtype(images)
    x = images.to(work)
    h, w = x.shape[-2:]
    out = x.clone()
    for z in factors:
        out.add_(clipped_zoom(x, z))
    out.div_(len(factors) + 1)
    return out.clamp_(0, 1).to(images.dtype)


@PERTURBATIONS.register
def zoom_blur(
    images: Tensor,
    severity: int,
    *,
    generator: Generators = None,
    profile: str | None = None,
) -> Tensor:
    """Zoom blur: the average of centre zooms, deterministic.

    Args:
        images: clean pixels in [0, 1].
        severity: 1..5; zoom factors ``arange(1, max, step)`` from the profile's table.
        generator: unused (deterministic corruption); accepted for a uniform signature.
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"``; default chosen from the image size.

    Returns:
        Blurred pixels in [0, 1], same shape, dtype and device.

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: images not ``(N, 3, H, W)`` float in [0, 1], severity outside 1..5, unknown profile.

    Fidelity: follows the original ``clipped_zoom``, which trims the enlarged crop back to the image *centre*;
    ``imagecorruptions`` keeps its *top-left* ``H x W`` instead, a shift of up to a pixel or two at some zoom
    factors.
    """
    zooms, _ = setup_corruption("zoom_blur", images, severity, profile)
    return apply_zoom_blur(images, zooms)
