"""Noise corruptions: Gaussian, shot (Poisson), impulse (salt and pepper) and speckle noise.

Each corruption has two layers: the registered ``(images, severity)`` function that looks up the benchmark
parameter, and a public ``apply_*`` core that takes the parameter itself (a float, or one value per sample) so that
perturbation sequences can reuse it with per-frame parameters. The noise field is drawn from ``generator`` through
:mod:`robustlab.rng` (on CPU, then moved), so CPU and CUDA give the same values for the same seed.

Fidelity: the formulas follow hendrycks/robustness ``make_imagenet_c.py`` / ``make_cifar_c.py`` /
``make_tinyimagenet_c.py``. The random streams differ (torch instead of NumPy's global RNG), so outputs match the
reference in distribution, not pixel for pixel.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from robustlab import rng
from robustlab.perturb._common import per_sample, setup_corruption, work_dtype
from robustlab.perturb._registry import PERTURBATIONS
from robustlab.rng import Generators


def apply_gaussian_noise(images: Tensor, sigma: float | Tensor, *, generator: Generators = None) -> Tensor:
    """Add N(0, σ²) noise to every pixel and channel, then clip to [0, 1].

    Args:
        images: clean pixels (not validated here; the registered corruption validates).
        sigma: noise standard deviation in [0, 1] pixel units, one value or one per sample.
        generator: one generator, or one per sample.

    Returns:
        Noisy pixels, same shape, dtype and device.

    Shape:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``; ``sigma`` scalar or ``(N,)``.

    Raises:
        ValueError: a per-sample ``sigma`` of the wrong length.
    """
    dtype = work_dtype(images)
    s = per_sample(sigma, images, dtype)
    noise = rng.randn(images.shape, generator=generator, device=images.device, dtype=dtype)
    # in place on the fresh noise buffer: full-size temporaries cost more than the arithmetic
    return noise.mul_(s).add_(images).clamp_(0.0, 1.0).to(images.dtype)


_MAX_TABLE_RATE = 4096.0  # above this, torch.poisson (the CDF tables and the correction steps grow with the rate)


def _guide_buckets(rate: float) -> int:
    # about 64 buckets per possible count, so few buckets hold a CDF jump; a power of two keeps u · buckets exact,
    # and 256 levels x buckets stays below 2^22 (exact float32 indices, tables of a few MB)
    return 1 << min(14, max(6, (64 * (math.ceil(rate) + 1) - 1).bit_length()))


@functools.lru_cache(maxsize=16)
def _poisson_level_tables(rate: float, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, int]:
    """Inverse-CDF tables of ``min(poisson(value_q · rate), ceil(rate))`` for the 256 uint8 levels ``q``.

    Returns ``(cdf, guide, ambiguous, buckets)``: ``cdf`` ``(256, K)`` float64 (last column 1: counts at or above
    ``ceil(rate)`` all clip to 1 after ``/ rate``); ``guide`` ``(256 · buckets,)`` the smallest ``k`` with
    ``cdf >= j / buckets``; ``ambiguous`` marks buckets that contain a jump of the CDF and need an exact check.
    """
    values = (torch.arange(256, dtype=dtype) / 255).double()  # bit-identical to uint8 pixels / 255 in ``dtype``
    rates = values * rate
    kmax = math.ceil(rate)
    k = torch.arange(kmax + 1, dtype=torch.float64)
    log_pmf = torch.special.xlogy(k[None, :], rates[:, None]) - rates[:, None] - torch.lgamma(k + 1)[None, :]
    cdf = torch.exp(log_pmf).cumsum(1).clamp_(max=1.0)
    cdf[:, -1] = 1.0
    buckets = _guide_buckets(rate)
    edges = torch.arange(buckets, dtype=torch.float64) / buckets
    guide = torch.searchsorted(cdf, edges.expand(256, -1).contiguous())
    ambiguous = torch.gather(cdf, 1, guide) < (edges + 1.0 / buckets)[None, :]
    return cdf, guide.to(torch.int16).flatten(), ambiguous.flatten(), buckets


def _shot_noise_on_grid(level: Tensor, u: Tensor, rate: float, dtype: torch.dtype) -> Tensor:
    """Clipped Poisson counts by inversion, for pixels on the uint8 grid (``level`` = pixel · 255, integral)."""
    tables, guides, ambiguities, buckets = _poisson_level_tables(rate, dtype)
    cdf, guide, ambiguous = (t.to(level.device) for t in (tables, guides, ambiguities))
    # full-size temporaries cost more than the arithmetic here, so buffers are reused in place
    scratch = u.mul(buckets).floor_()
    flat = level.mul_(buckets).add_(scratch).to(torch.int32).view(-1)  # exact: below 2^22
    counts = guide.index_select(0, flat)
    pos = ambiguous.index_select(0, flat).nonzero().squeeze(1)
    if pos.numel():
        # buckets containing a CDF jump: step forward to the smallest k with cdf(k) >= u
        q = torch.div(flat[pos], buckets, rounding_mode="floor").long() * cdf.shape[1]
        k = counts[pos].long()
        u_sel = u.view(-1)[pos].double()
        cdf_flat = cdf.flatten()
        step = cdf_flat[q + k] < u_sel
        while bool(step.any()):
            k += step
            step = cdf_flat[q + k] < u_sel
        counts[pos] = k.to(counts.dtype)
    return scratch.to(dtype).copy_(counts.view(u.shape)).div_(rate).clamp_(max=1.0)


def _shot_noise_scalar(images: Tensor, rate: float, generator: Generators, dtype: torch.dtype) -> Tensor:
    x = images.to(dtype).contiguous()  # flat indexing below assumes the layout of the noise draws
    u = rng.rand(images.shape, generator=generator, device=images.device)
    level = (x * 255.0).round_()
    on_grid = (level / 255.0 == x).flatten(1).all(1)
    tables_fit = rate <= _MAX_TABLE_RATE
    out = torch.empty_like(x)
    if tables_fit and bool(on_grid.any()):
        idx = on_grid.nonzero().squeeze(1)
        whole = idx.numel() == x.shape[0]
        out_grid = _shot_noise_on_grid(level if whole else level[idx], u if whole else u[idx], rate, dtype)
        if whole:
            return out_grid.to(images.dtype)
        out[idx] = out_grid
    # off the uint8 grid (or a huge rate): Poisson draws from the same generators
    rest = (~on_grid if tables_fit else torch.ones_like(on_grid)).nonzero().squeeze(1)
    gens = rng.generator_list(generator, x.shape[0])
    sub_gen = generator if isinstance(generator, torch.Generator) or generator is None else [gens[i] for i in rest]
    out[rest] = (rng.poisson(x[rest] * rate, generator=sub_gen) / rate).clamp_(0.0, 1.0)
    return out.to(images.dtype)


def apply_shot_noise(images: Tensor, rate: float | Tensor, *, generator: Generators = None) -> Tensor:
    """Poisson (photon shot) noise: ``poisson(x · λ) / λ``, clipped to [0, 1].

    Images whose pixels lie on the uint8 grid (``k / 255``, as every decoded image does) are sampled by exact
    inversion of the Poisson CDF from one uniform per value, with per-level tables (about 3x faster than
    ``torch.poisson``, which is serial on CPU). Other images, or rates above 4096, use :func:`robustlab.rng.poisson`;
    the choice is made per sample, so a sample's noise does not depend on its batch.

    Args:
        images: clean pixels.
        rate: Poisson rate λ > 0 (photons at full intensity; smaller is noisier), one value or one per sample.
        generator: one generator, or one per sample.

    Returns:
        Noisy pixels, same shape, dtype and device.

    Shape:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``; ``rate`` scalar or ``(N,)``.

    Raises:
        ValueError: a rate that is not positive, or a per-sample ``rate`` of the wrong length.
    """
    dtype = work_dtype(images)
    lam = per_sample(rate, images, dtype)
    if not isinstance(lam, Tensor):
        if not lam > 0:
            raise ValueError(f"shot noise rate must be > 0, got {rate!r}")
        return _shot_noise_scalar(images, lam, generator, dtype)
    if not bool((lam > 0).all()):
        raise ValueError("shot noise rates must all be > 0")
    # one pass per distinct rate (sequences use a few), each sample keeping its own generator
    gens = rng.generator_list(generator, images.shape[0])
    single = generator if isinstance(generator, torch.Generator) or generator is None else None
    out = torch.empty_like(images)
    flat = lam.flatten()
    for value in torch.unique(flat).tolist():
        idx = (flat == value).nonzero().squeeze(1)
        sub_gen = single if single is not None or generator is None else [gens[i] for i in idx.tolist()]
        out[idx] = _shot_noise_scalar(images[idx], value, sub_gen, dtype)
    return out


def apply_impulse_noise(images: Tensor, amount: float | Tensor, *, generator: Generators = None) -> Tensor:
    """Salt-and-pepper noise: each value independently becomes 1 (p = amount/2) or 0 (p = amount/2).

    This is the distribution of scikit-image's ``random_noise(mode='s&p', amount=a)`` used by the original
    benchmark: a Bernoulli(a) "flip" per element of the HWC array (so per channel, not per pixel), and a fair coin
    for salt vs pepper. One uniform draw per element decides both.

    Args:
        images: clean pixels.
        amount: probability that a value is replaced, one value or one per sample.
        generator: one generator, or one per sample.

    Returns:
        Noisy pixels, same shape, dtype and device.

    Shape:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``; ``amount`` scalar or ``(N,)``.

    Raises:
        ValueError: a per-sample ``amount`` of the wrong length.
    """
    dtype = work_dtype(images)
    a = per_sample(amount, images, dtype)
    u = rng.rand(images.shape, generator=generator, device=images.device, dtype=dtype)
    salt = u < a * 0.5
    flipped = u < a
    return u.copy_(images).masked_fill_(flipped, 0.0).masked_fill_(salt, 1.0).to(images.dtype)


def apply_speckle_noise(images: Tensor, sigma: float | Tensor, *, generator: Generators = None) -> Tensor:
    """Multiplicative Gaussian noise: ``x + x · N(0, σ²)``, clipped to [0, 1].

    Args:
        images: clean pixels.
        sigma: standard deviation of the multiplicative noise, one value or one per sample.
        generator: one generator, or one per sample.

    Returns:
        Noisy pixels, same shape, dtype and device.

    Shape:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``; ``sigma`` scalar or ``(N,)``.

    Raises:
        ValueError: a per-sample ``sigma`` of the wrong length.
    """
    dtype = work_dtype(images)
    s = per_sample(sigma, images, dtype)
    noise = rng.randn(images.shape, generator=generator, device=images.device, dtype=dtype)
    return noise.mul_(s).add_(1.0).mul_(images).clamp_(0.0, 1.0).to(images.dtype)


@PERTURBATIONS.register
def gaussian_noise(
    images: Tensor, severity: int, *, generator: Generators = None, profile: str | None = None
) -> Tensor:
    """ImageNet-C Gaussian noise: additive N(0, σ²) with σ from the profile's severity table.

    Args:
        images: clean pixels.
        severity: 1..5.
        generator: one generator, or one per sample so a sample's noise does not depend on its batch.
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"``; default chosen from the image size.

    Returns:
        Corrupted pixels, same shape, dtype and device, in [0, 1].

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: images not ``(N, 3, H, W)`` float in [0, 1], severity outside 1..5, unknown profile.

    Note:
        Same formula as the original and ``imagecorruptions``; the noise is float32 (theirs float64), which is
        invisible after the usual uint8 storage.
    """
    sigma, _ = setup_corruption("gaussian_noise", images, severity, profile)
    return apply_gaussian_noise(images, sigma, generator=generator)


@PERTURBATIONS.register
def shot_noise(images: Tensor, severity: int, *, generator: Generators = None, profile: str | None = None) -> Tensor:
    """ImageNet-C shot noise: ``poisson(x · λ) / λ`` with λ from the profile's severity table.

    Args:
        images: clean pixels.
        severity: 1..5.
        generator: one generator, or one per sample.
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"``; default chosen from the image size.

    Returns:
        Corrupted pixels, same shape, dtype and device, in [0, 1].

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: images not ``(N, 3, H, W)`` float in [0, 1], severity outside 1..5, unknown profile.

    Note:
        Same formula as the original; Poisson samples come from ``torch.poisson`` on CPU (via
        :func:`robustlab.rng.poisson`), so the values do not depend on the device.
    """
    rate, _ = setup_corruption("shot_noise", images, severity, profile)
    return apply_shot_noise(images, rate, generator=generator)


@PERTURBATIONS.register
def impulse_noise(images: Tensor, severity: int, *, generator: Generators = None, profile: str | None = None) -> Tensor:
    """ImageNet-C impulse (salt-and-pepper) noise with the amount from the profile's severity table.

    Args:
        images: clean pixels.
        severity: 1..5.
        generator: one generator, or one per sample.
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"``; default chosen from the image size.

    Returns:
        Corrupted pixels, same shape, dtype and device, in [0, 1].

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: images not ``(N, 3, H, W)`` float in [0, 1], severity outside 1..5, unknown profile.

    Note:
        Reproduces the distribution of ``skimage.util.random_noise(mode='s&p')`` (independent per channel, salt and
        pepper equally likely). The reference draws from an unseeded ``np.random.default_rng()`` in current
        scikit-image, so not even the reference is reproducible pixel for pixel.
    """
    amount, _ = setup_corruption("impulse_noise", images, severity, profile)
    return apply_impulse_noise(images, amount, generator=generator)


@PERTURBATIONS.register
def speckle_noise(images: Tensor, severity: int, *, generator: Generators = None, profile: str | None = None) -> Tensor:
    """ImageNet-C speckle noise: ``x + x · N(0, σ²)`` with σ from the profile's severity table.

    Args:
        images: clean pixels.
        severity: 1..5.
        generator: one generator, or one per sample.
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"``; default chosen from the image size.

    Returns:
        Corrupted pixels, same shape, dtype and device, in [0, 1].

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: images not ``(N, 3, H, W)`` float in [0, 1], severity outside 1..5, unknown profile.

    Note:
        Same formula as the original and ``imagecorruptions`` (a validation corruption, not part of mCE).
    """
    sigma, _ = setup_corruption("speckle_noise", images, severity, profile)
    return apply_speckle_noise(images, sigma, generator=generator)
