"""The Gaussian-noise study's theory against Monte Carlo: every closed form agrees with simulation within 2 %."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from robustlab.study import theory


def _noise(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("k", [1, 3, 5, 7, 11])
@pytest.mark.parametrize("kind", ["box", "gaussian"])
def test_kernel_noise_gain_matches_monte_carlo(kind: str, k: int) -> None:
    kernel = theory.box_kernel(k) if kind == "box" else theory.gaussian_kernel(k)
    noise = _noise((4, 1, 160, 160))
    out = F.conv2d(noise, torch.as_tensor(kernel)[None, None])
    assert _rel(out.std().item() / noise.std().item(), theory.noise_gain(kernel)) < 0.02


def test_box_gain_is_one_over_k_and_variance_one_over_k_squared() -> None:
    for k in (1, 2, 3, 7):
        assert theory.noise_gain(theory.box_kernel(k)) == pytest.approx(1 / k)
        assert theory.box_noise_gain(k) == pytest.approx(1 / k)
        assert theory.noise_variance_gain(theory.box_kernel(k)) == pytest.approx(1 / k**2)
    # a larger low-pass stem always passes less noise
    gains = [theory.noise_gain(theory.gaussian_kernel(k)) for k in (3, 5, 7, 9)]
    assert gains == sorted(gains, reverse=True)


@pytest.mark.parametrize("factor", [1, 2, 4, 8])
def test_antialiased_downsampling_keeps_one_over_s_squared_of_noise_energy(factor: int) -> None:
    noise = _noise((8, 1, 256, 256), seed=1)
    out = F.avg_pool2d(noise, factor)  # box low-pass + stride s: the simplest anti-aliased downsampler
    energy = (out**2).mean().item() / (noise**2).mean().item()
    assert _rel(energy, theory.downsample_noise_energy(factor)) < 0.02
    # without the low-pass, strided subsampling keeps all the energy per pixel
    assert _rel((noise[..., ::factor, ::factor] ** 2).mean().item(), 1.0) < 0.02


def test_expected_max_gaussian_known_values() -> None:
    assert theory.expected_max_gaussian(1) == 0.0
    assert theory.expected_max_gaussian(2) == pytest.approx(1 / math.sqrt(math.pi), rel=1e-6)
    assert theory.expected_max_gaussian(3) == pytest.approx(1.5 / math.sqrt(math.pi), rel=1e-6)


@pytest.mark.parametrize("window", [2, 3, 4, 7])
def test_pooling_bias_and_mse_match_monte_carlo(window: int) -> None:
    sigma = 0.3
    noise = sigma * _noise((64, 1, 32 * window, 32 * window), seed=2)  # 65,536 pooled outputs
    avg = F.avg_pool2d(noise, window)
    mx = F.max_pool2d(noise, window)
    st = theory.pooling_noise_stats(window, sigma)
    assert abs(avg.mean().item()) < 0.02 * sigma  # unbiased
    assert _rel((avg**2).mean().item(), st["avg_mse"]) < 0.02
    assert _rel(mx.mean().item(), st["max_bias"]) < 0.02
    assert _rel((mx**2).mean().item(), st["max_mse"]) < 0.02
    # the paper's claims: max pooling is biased, its MSE exceeds average pooling's, its bias grows slowly
    assert st["max_bias"] > 0 and st["max_mse"] > st["avg_mse"]


def test_max_pool_bias_grows_slowly_with_window() -> None:
    biases = [theory.pooling_noise_stats(w)["max_bias"] for w in (2, 3, 5, 9)]
    assert biases == sorted(biases)
    assert all(b < math.sqrt(2 * math.log(w * w)) for b, w in zip(biases, (2, 3, 5, 9), strict=True))


def test_normalization_lipschitz_matches_measured_amplification() -> None:
    std = torch.tensor(theory.CLIP_STD).view(1, 3, 1, 1)
    delta = 0.01 * _noise((2000, 3, 1, 1), seed=3).float()
    amplified = (delta / std).abs().amax() / delta.abs().amax()
    assert amplified <= theory.normalization_lipschitz(theory.CLIP_STD) + 1e-6
    assert theory.normalization_lipschitz((0.5, 0.5, 0.5)) == pytest.approx(2.0)


def test_clip_vs_inception_factor_is_the_papers_1_91() -> None:
    assert theory.clip_vs_inception_factor() == "1.91"
    assert theory.normalization_ratio() == pytest.approx(0.5 / 0.26130258)
    # against the ImageNet default std the CLIP std is *not* smaller: the 1.91 is relative to Inception std
    assert theory.normalization_ratio(theory.CLIP_STD, theory.IMAGENET_STD) < 1


@pytest.mark.parametrize(
    "call",
    [
        lambda: theory.box_kernel(0),
        lambda: theory.gaussian_kernel(3, std=0),
        lambda: theory.downsample_noise_energy(-2),
        lambda: theory.pooling_noise_stats(2, sigma=-1),
        lambda: theory.normalization_lipschitz((0.5, 0.0, 0.5)),
        lambda: theory.noise_gain([]),
    ],
)
def test_bad_arguments_raise_value_error(call) -> None:
    with pytest.raises(ValueError):
        call()
