"""Closed-form noise theory of the Gaussian-noise study: how stems, downsampling, pooling and normalisation move noise.

Every function here is pure (numbers in, numbers out). White Gaussian noise of standard deviation ``sigma`` is
the input; each function says what comes out of one architectural module. The Monte Carlo checks live in
``tests/study/test_theory.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import integrate, stats

# Reference normalisation constants (per RGB channel).
# CLIP: OpenAI CLIP preprocessing (open_clip.constants.OPENAI_DATASET_STD), used by CLIP ViTs.
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
# Inception-style: timm IMAGENET_INCEPTION_STD, common in supervised ViTs (augreg, DeiT-III in21k ...).
INCEPTION_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)
INCEPTION_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
# torchvision / timm IMAGENET_DEFAULT_STD.
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)


def _check_positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def box_kernel(k: int) -> np.ndarray:
    """The normalised ``k x k`` box (mean) filter, entries ``1 / k**2``.

    Raises:
        ValueError: ``k`` is not a positive int.
    """
    k = _check_positive_int(k, "k")
    return np.full((k, k), 1.0 / (k * k))


def gaussian_kernel(k: int, std: float | None = None) -> np.ndarray:
    """A normalised ``k x k`` Gaussian filter (sum 1). ``std`` defaults to ``k / 6`` (the kernel spans ±3 std).

    Raises:
        ValueError: ``k`` not a positive int or ``std`` not positive.
    """
    k = _check_positive_int(k, "k")
    std = k / 6.0 if std is None else float(std)
    if not std > 0:
        raise ValueError(f"std must be positive, got {std}")
    x = np.arange(k) - (k - 1) / 2.0
    g = np.exp(-(x**2) / (2 * std**2))
    kernel = np.outer(g, g)
    return kernel / kernel.sum()


def noise_variance_gain(kernel: np.ndarray | Sequence[Sequence[float]]) -> float:
    """Output variance / input variance of white noise through a linear filter: ``sum(w**2)``.

    For the ``k x k`` box this is ``1 / k**2`` — the variance gain falls quadratically with kernel size.

    Args:
        kernel: filter weights, any shape (2-D for an image stem).

    Raises:
        ValueError: an empty kernel.
    """
    w = np.asarray(kernel, dtype=np.float64)
    if w.size == 0:
        raise ValueError("kernel is empty")
    return float((w**2).sum())


def noise_gain(kernel: np.ndarray | Sequence[Sequence[float]]) -> float:
    """Output std / input std of white Gaussian noise through a linear filter: ``sqrt(sum(w**2))``.

    ``1 / k`` for the normalised ``k x k`` box. Example:
        >>> round(noise_gain(box_kernel(7)), 6)
        0.142857
    """
    return math.sqrt(noise_variance_gain(kernel))


def box_noise_gain(k: int) -> float:
    """Std gain of the normalised ``k x k`` box filter: exactly ``1 / k``."""
    return 1.0 / _check_positive_int(k, "k")


def downsample_noise_energy(factor: int) -> float:
    """Noise variance left after anti-aliased ``factor``-times downsampling (``factor x factor`` box, stride
    ``factor``, i.e. average pooling): ``1 / factor**2`` of the input variance.

    An ideal low-pass before subsampling keeps a ``1 / factor**2`` share of the white-noise spectrum, so the
    energy per output pixel falls with the square of the factor; plain strided subsampling (no filter) keeps
    all of it (gain 1).
    """
    s = _check_positive_int(factor, "factor")
    return 1.0 / (s * s)


def expected_max_gaussian(n: int) -> float:
    """``E[max(Z_1..Z_n)]`` for ``n`` i.i.d. standard normals (numerical integral; 0 for n=1, ``1/sqrt(pi)`` for 2).

    Raises:
        ValueError: ``n`` not a positive int.
    """
    n = _check_positive_int(n, "n")
    if n == 1:
        return 0.0

    def integrand(z: float) -> float:
        return z * n * stats.norm.pdf(z) * stats.norm.cdf(z) ** (n - 1)

    value, _ = integrate.quad(integrand, -12.0, 12.0, limit=200)
    return float(value)


def expected_max_gaussian_sq(n: int) -> float:
    """``E[max(Z_1..Z_n)**2]`` for ``n`` i.i.d. standard normals (numerical integral)."""
    n = _check_positive_int(n, "n")

    def integrand(z: float) -> float:
        return z * z * n * stats.norm.pdf(z) * stats.norm.cdf(z) ** (n - 1)

    value, _ = integrate.quad(integrand, -12.0, 12.0, limit=200)
    return float(value)


def pooling_noise_stats(window: int, sigma: float = 1.0) -> dict[str, float]:
    """Bias and MSE of average vs max pooling over a ``window x window`` patch of pure noise ``N(0, sigma**2)``.

    The clean signal is taken as constant (zero) over the window, so any output is error:

    - average pooling: unbiased, MSE ``sigma**2 / n`` with ``n = window**2`` (falls with the window area);
    - max pooling: bias ``sigma * E[max of n standard normals]`` (positive, grows like ``sqrt(2 log n)``),
      MSE ``sigma**2 * E[max**2]``.

    Returns:
        ``{"n", "avg_bias", "avg_mse", "max_bias", "max_mse"}``.

    Raises:
        ValueError: ``window`` not a positive int or ``sigma`` negative.
    """
    window = _check_positive_int(window, "window")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    n = window * window
    return {
        "n": float(n),
        "avg_bias": 0.0,
        "avg_mse": sigma**2 / n,
        "max_bias": sigma * expected_max_gaussian(n),
        "max_mse": sigma**2 * expected_max_gaussian_sq(n),
    }


def _check_std(std: Sequence[float], name: str) -> np.ndarray:
    values = np.asarray(std, dtype=np.float64).reshape(-1)
    if values.size == 0 or not np.all(values > 0):
        raise ValueError(f"{name} must be a non-empty sequence of positive numbers, got {tuple(std)}")
    return values


def normalization_lipschitz(std: Sequence[float]) -> float:
    """Lipschitz constant (L2 and L∞) of ``x -> (x - mean) / std`` in pixel space: ``1 / min(std)``.

    Noise added to [0, 1] pixels reaches the first layer multiplied by ``1 / std_c`` per channel; the worst
    channel bounds the amplification.

    Raises:
        ValueError: an empty ``std`` or a non-positive entry.
    """
    return float(1.0 / _check_std(std, "std").min())


def normalization_ratio(std: Sequence[float] = CLIP_STD, reference: Sequence[float] = INCEPTION_STD) -> float:
    """How much more ``std`` amplifies worst-case pixel noise than ``reference``: ``min(reference) / min(std)``.

    With the defaults (CLIP std vs the Inception-style ``(0.5, 0.5, 0.5)`` of supervised ViTs) this is
    ``0.5 / 0.26130258 = 1.913`` — the paper's "up to 1.91 times".

    Example:
        >>> round(normalization_ratio(), 2)
        1.91
    """
    return normalization_lipschitz(std) / normalization_lipschitz(reference)


def clip_vs_inception_factor() -> str:
    """The paper's CLIP-vs-supervised sensitivity factor, formatted (``"1.91"``)."""
    return f"{normalization_ratio(CLIP_STD, INCEPTION_STD):.2f}"
