"""AFAT's learned occlusion ops (moved from tests/methods/test_afat.py with the code): the keep mask of patch
scores and the patch fill of eq. 1."""

from __future__ import annotations

import math

import pytest
import torch

from robustlab.perturb.occlusion import corrupt_patches, keep_mask, occluded_count


def batch(n: int = 4, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize(("rho", "patches", "count"), [(0.1, 64, 6), (0.1, 196, 19), (0.29, 100, 29), (0.5, 16, 8),
                                                       (0.1, 16, 1), (0.99, 64, 63)])  # fmt: skip
def test_keep_mask_occludes_exactly_floor_rho_n_lowest_patches(rho: float, patches: int, count: int) -> None:
    assert occluded_count(rho, patches) == count == math.floor(rho * patches + 1e-9)
    scores = torch.randn(5, patches, generator=torch.Generator().manual_seed(1))
    keep = keep_mask(scores, rho)
    assert set(keep.unique().tolist()) <= {0.0, 1.0}
    assert ((keep == 0).sum(dim=1) == count).all()
    # the occluded ones are the lowest scores of their row
    lowest = scores.argsort(dim=1)[:, :count]
    assert (keep.gather(1, lowest) == 0).all()


def test_keep_mask_is_exact_under_ties() -> None:
    keep = keep_mask(torch.zeros(3, 64), 0.1)
    assert ((keep == 0).sum(dim=1) == 6).all()


def test_straight_through_gradient_is_clipped_to_unit_interval() -> None:
    scores = torch.randn(2, 16, generator=torch.Generator().manual_seed(0)).requires_grad_()
    upstream = torch.linspace(-4, 4, 32).view(2, 16)
    (keep_mask(scores, 0.25) * upstream).sum().backward()
    assert torch.equal(scores.grad, upstream.clamp(-1, 1))


def test_corrupt_patches_replaces_exactly_the_occluded_patches_and_passes_gradient_to_the_mask() -> None:
    images, _ = batch(2, 8)
    keep = torch.ones(2, 4)
    keep[0, 1] = 0  # top-right 4 x 4 patch of image 0
    keep.requires_grad_()
    out = corrupt_patches(images, keep, 4, generator=torch.Generator().manual_seed(7))
    changed = (out != images).any(dim=1)  # (2, 8, 8)
    assert changed[0, :4, 4:].all() and changed.sum() == 16  # only that patch, every pixel of it
    assert out.min() >= 0 and out.max() <= 1
    # d x̂ / d M = x − δ summed over the patch's pixels
    noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(7))
    out.sum().backward()
    expected = (images - noise).sum(dim=1).view(2, 2, 4, 2, 4).sum(dim=(2, 4)).flatten(1)
    torch.testing.assert_close(keep.grad, expected)


def test_normalized_noise_is_uniform_in_the_models_input_space() -> None:
    images, _ = batch(2, 8)
    keep = torch.zeros(2, 4)
    mean, std = torch.tensor([0.4, 0.5, 0.6]), torch.tensor([0.1, 0.2, 0.3])
    out = corrupt_patches(images, keep, 4, fill="normalized", mean=mean, std=std)
    normalized = (out - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    assert normalized.min() >= -1e-6 and normalized.max() <= 1 + 1e-6
