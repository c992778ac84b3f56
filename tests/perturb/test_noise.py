"""Noise corruptions: gaussian_noise, shot_noise, impulse_noise, speckle_noise and their apply_* cores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from robustlab import rng
from robustlab.perturb import SEVERITY_TABLES, perturb
from robustlab.perturb.noise import (
    apply_gaussian_noise,
    apply_impulse_noise,
    apply_shot_noise,
    apply_speckle_noise,
)

NAMES = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")


def _images(n: int = 4, size: int = 32, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Smooth colour gradients plus texture, on the uint8 grid like decoded images."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, size // 4, size // 4, generator=g)
    smooth = torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)
    x = (0.8 * smooth + 0.2 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)
    return ((x * 255).round() / 255).to(dtype)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_range_and_determinism(name: str, dtype: torch.dtype) -> None:
    x = _images(dtype=dtype)
    a = perturb(x, name, 3, generator=_gen(1))
    b = perturb(x, name, 3, generator=_gen(1))
    c = perturb(x, name, 3, generator=_gen(2))
    assert a.shape == x.shape and a.dtype == dtype and a.device == x.device
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(x, _images(dtype=dtype))  # input untouched


@pytest.mark.parametrize("name", NAMES)
def test_batch_independence_with_per_sample_generators(name: str) -> None:
    x = _images(n=4)
    batched = perturb(x, name, 2, generator=rng.sample_generators(5, range(4), name))
    for i in range(4):
        alone = perturb(x[i : i + 1], name, 2, generator=rng.sample_generators(5, [i], name))
        assert torch.equal(batched[i : i + 1], alone)


def test_shot_noise_batch_independence_mixed_grid() -> None:
    # sample 1 is off the uint8 grid (Poisson fallback); the others use table inversion
    x = _images(n=3)
    x[1] = (x[1] * 0.999 + 0.0001).clamp(0, 1)
    gens = rng.sample_generators(3, range(3), "shot")
    batched = apply_shot_noise(x, 12.0, generator=gens)
    for i in range(3):
        alone = apply_shot_noise(x[i : i + 1], 12.0, generator=rng.sample_generators(3, [i], "shot"))
        assert torch.equal(batched[i : i + 1], alone)


@pytest.mark.parametrize("profile", ["imagenet", "cifar", "tiny"])
@pytest.mark.parametrize("name", NAMES)
def test_severity_monotone_distance(name: str, profile: str) -> None:
    x = _images(n=8, seed=3)
    dist = [
        float(
            (perturb(x, name, s, generator=rng.sample_generators(0, range(8), name, s), profile=profile) - x)
            .abs()
            .mean()
        )
        for s in range(1, 6)
    ]
    assert all(a < b for a, b in zip(dist, dist[1:], strict=False)), dist


def test_gaussian_and_speckle_statistics() -> None:
    grey = torch.full((2, 3, 128, 128), 0.5)
    out = apply_gaussian_noise(grey, 0.08, generator=_gen())
    assert abs(float((out - grey).std()) - 0.08) < 0.002
    assert abs(float((out - grey).mean())) < 0.002
    out = apply_speckle_noise(grey, 0.2, generator=_gen())
    assert abs(float((out - grey).std()) - 0.5 * 0.2) < 0.002
    black = torch.zeros(1, 3, 16, 16)
    assert torch.equal(apply_speckle_noise(black, 0.6, generator=_gen()), black)  # multiplicative


def test_impulse_noise_statistics_per_channel() -> None:
    grey = torch.full((2, 3, 256, 256), 0.5)
    amount = 0.2
    out = apply_impulse_noise(grey, amount, generator=_gen())
    salt = (out == 1).float()
    pepper = (out == 0).float()
    assert abs(float(salt.mean()) - amount / 2) < 0.003
    assert abs(float(pepper.mean()) - amount / 2) < 0.003
    assert torch.equal(out[(salt + pepper) == 0], grey[(salt + pepper) == 0])
    # independent per channel (skimage flips elements of the HWC array): all three flipped ~ amount^3
    all_flipped = ((salt + pepper).sum(1) == 3).float().mean()
    assert abs(float(all_flipped) - amount**3) < 0.002


@pytest.mark.parametrize("rate", [3.0, 12.0, 60.0, 500.0, 7.5])
def test_shot_noise_moments_match_poisson(rate: float) -> None:
    level = 100 / 255
    x = torch.full((1, 3, 200, 200), level)
    out = apply_shot_noise(x, rate, generator=_gen())
    # clipped Poisson moments, computed exactly
    k = torch.arange(0, int(rate * 4 + 60), dtype=torch.float64)
    lam = level * rate
    pmf = torch.exp(torch.special.xlogy(k, torch.tensor(lam)) - lam - torch.lgamma(k + 1))
    values = (k / rate).clamp(max=1.0)
    mean = float((pmf * values).sum())
    var = float((pmf * values**2).sum()) - mean**2
    n = out.numel()
    assert abs(float(out.double().mean()) - mean) < 5 * math.sqrt(var / n)
    assert abs(float(out.double().var()) / var - 1) < 0.03
    # the output lives on the k / rate grid (or is clipped to 1)
    counts = out[out < 1].double() * rate
    assert torch.allclose(counts, counts.round(), atol=1e-4)


def test_shot_noise_off_grid_uses_poisson_fallback_with_same_law() -> None:
    x = torch.full((1, 3, 200, 200), 0.4 + 1e-4)
    out = apply_shot_noise(x, 12.0, generator=_gen())
    lam = float(x[0, 0, 0, 0]) * 12
    assert abs(float(out.mean()) - lam / 12) < 0.003
    assert abs(float(out.var()) - lam / 144) < 0.002


def test_per_sample_parameters_equal_separate_calls() -> None:
    x = _images(n=3)
    sigmas = torch.tensor([0.05, 0.1, 0.2])
    gens = rng.sample_generators(1, range(3), "p")
    batched = apply_gaussian_noise(x, sigmas, generator=gens)
    rates = torch.tensor([5.0, 60.0, 5.0])
    shot = apply_shot_noise(x, rates, generator=rng.sample_generators(2, range(3), "p"))
    for i in range(3):
        g = rng.sample_generators(1, [i], "p")
        assert torch.equal(batched[i : i + 1], apply_gaussian_noise(x[i : i + 1], float(sigmas[i]), generator=g))
        g = rng.sample_generators(2, [i], "p")
        assert torch.equal(shot[i : i + 1], apply_shot_noise(x[i : i + 1], float(rates[i]), generator=g))
    with pytest.raises(ValueError, match="per-sample"):
        apply_gaussian_noise(x, torch.tensor([0.1, 0.2]))


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_raise_value_error(name: str) -> None:
    x = _images(n=1)
    for severity in (0, 6, 2.5):
        with pytest.raises(ValueError, match="severity"):
            perturb(x, name, severity)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        perturb(x[0], name, 1)
    with pytest.raises(ValueError, match="RGB"):
        perturb(x[:, :1], name, 1)
    with pytest.raises(ValueError, match="floating point"):
        perturb((x * 255).to(torch.uint8), name, 1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        perturb(x * 3, name, 1)
    with pytest.raises(ValueError, match="profile"):
        perturb(x, name, 1, profile="imagenett")


def test_shot_noise_rejects_non_positive_rate() -> None:
    with pytest.raises(ValueError, match="rate"):
        apply_shot_noise(_images(n=1), 0.0)
    with pytest.raises(ValueError, match="rate"):
        apply_shot_noise(_images(n=2), torch.tensor([1.0, -1.0]))


def test_profile_follows_image_size() -> None:
    grey32 = torch.full((2, 3, 32, 32), 0.5)
    grey224 = torch.full((1, 3, 224, 224), 0.5)
    std32 = float((perturb(grey32, "gaussian_noise", 5, generator=_gen()) - 0.5).std())
    std224 = float((perturb(grey224, "gaussian_noise", 5, generator=_gen()) - 0.5).std())
    assert abs(std32 - SEVERITY_TABLES["gaussian_noise"]["cifar"][4]) < 0.01
    assert abs(std224 - 0.34) < 0.03  # σ = .38 before clipping to [0, 1]
    forced = perturb(grey32, "gaussian_noise", 5, generator=_gen(), profile="imagenet")
    assert float((forced - 0.5).std()) > 0.3
    with pytest.warns(UserWarning, match="profile"):
        perturb(torch.full((1, 3, 48, 48), 0.5), "gaussian_noise", 1, generator=_gen())


def _psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(1)
    return 10 * np.log10(255.0**2 / mse)


@pytest.mark.realdata
@pytest.mark.parametrize("name", NAMES)
def test_psnr_matches_reference_on_imagenet_crops(name: str, data_root) -> None:
    from imagecorruptions_ref import imagenet_crops, reference_corrupt

    crops = imagenet_crops(data_root, 8)
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255)
    for severity in range(1, 6):
        ours = perturb(x, name, severity, generator=rng.sample_generators(0, range(8), name, severity))
        ours_u8 = (ours * 255).permute(0, 2, 3, 1).numpy()
        ref = np.stack([reference_corrupt(im, name, severity, seed=i) for i, im in enumerate(crops)])
        gap = float(_psnr(ours_u8, crops).mean() - _psnr(ref, crops).mean())
        assert abs(gap) < 0.5, (severity, gap)
