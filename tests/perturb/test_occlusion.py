"""Patch occlusion (AFAT eq. 1): exact patch counts, noise only inside occluded patches, masks, gradients, errors."""

from __future__ import annotations

import math

import pytest
import torch

import robustlab.perturb.occlusion  # noqa: F401  (registers the occlusion perturbations)
from robustlab.perturb import PERTURBATIONS, perturb
from robustlab.perturb.occlusion import OCCLUSION_RATIOS, patch_occlusion, random_patch_occlusion


def _images(n: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    # values in [0.25, 0.75], so uniform noise in an occluded patch is far from the clean pixels on average
    return 0.25 + 0.5 * torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pixel_mask(mask: torch.Tensor, patch: int) -> torch.Tensor:
    return mask.repeat_interleave(patch, 1).repeat_interleave(patch, 2).unsqueeze(1).expand(-1, 3, -1, -1)


@pytest.mark.parametrize(("ratio", "patch", "expected"), [(0.1, 4, 6), (0.5, 8, 8), (0.125, 16, 1), (0.3, 8, 5)])
def test_exactly_round_ratio_patches_per_image(ratio: float, patch: int, expected: int) -> None:
    # 0.125 * 4 patches = 0.5 rounds half up to 1; 0.3 * 16 = 4.8 -> 5; 0.1 * 64 = 6.4 -> 6
    out, mask = patch_occlusion(_images(), ratio, patch_size=patch, generator=_gen())
    grid = 32 // patch
    assert mask.shape == (4, grid, grid) and mask.dtype == torch.bool
    assert mask.sum(dim=(1, 2)).tolist() == [expected] * 4
    assert out.shape == (4, 3, 32, 32) and out.dtype == torch.float32


def test_noise_only_inside_occluded_patches() -> None:
    x = _images()
    out, mask = patch_occlusion(x, 0.25, patch_size=8, generator=_gen(3))
    inside = _pixel_mask(mask, 8)
    assert torch.equal(out[~inside], x[~inside])  # kept patches are untouched
    noise = out[inside]
    assert 0.0 <= float(noise.min()) and float(noise.max()) <= 1.0
    assert abs(float(noise.mean()) - 0.5) < 0.05  # U[0, 1]
    assert float((noise - x[inside]).abs().mean()) > 0.1  # really replaced
    # different images pick different patches
    assert not all(torch.equal(mask[0], m) for m in mask[1:])


def test_zero_fill_and_extreme_ratios() -> None:
    x = _images()
    out, mask = patch_occlusion(x, 0.5, patch_size=4, generator=_gen(), noise="zeros")
    assert torch.all(out[_pixel_mask(mask, 4)] == 0)
    same, none = patch_occlusion(x, 0.0, patch_size=4, generator=_gen())
    assert torch.equal(same, x) and not none.any()
    _, every = patch_occlusion(x, 1.0, patch_size=4, generator=_gen())
    assert every.all()


def test_given_mask_is_used_exactly() -> None:
    x = _images(2)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[0, 1, 2] = True
    mask[1, 3, 0] = True
    out, used = patch_occlusion(x, None, patch_size=8, mask=mask, generator=_gen())
    assert torch.equal(used, mask)
    changed = (out != x).any(dim=1)  # (N, H, W)
    assert changed[0, 8:16, 16:24].all() and changed[1, 24:32, 0:8].all()
    assert int(changed.sum()) == 2 * 64


def test_float_mask_passes_gradients() -> None:
    x = _images(2).requires_grad_(True)
    weights = torch.full((2, 4, 4), 0.5, requires_grad=True)
    out, used = patch_occlusion(x, None, patch_size=8, mask=weights, generator=_gen())
    assert used is weights
    grad_x, grad_m = torch.autograd.grad(out.sum(), (x, weights))
    assert torch.allclose(grad_x, torch.full_like(x, 0.5))  # (1 - m) with m = 0.5
    assert grad_m.shape == (2, 4, 4) and grad_m.abs().sum() > 0
    # a binary float mask gives the same pixels as the bool mask
    hard = torch.zeros(2, 4, 4)
    hard[:, 0, 0] = 1.0
    a, _ = patch_occlusion(x.detach(), None, patch_size=8, mask=hard, generator=_gen(5))
    b, _ = patch_occlusion(x.detach(), None, patch_size=8, mask=hard.bool(), generator=_gen(5))
    assert torch.allclose(a, b)


def test_random_patches_pass_gradients_to_the_kept_pixels() -> None:
    x = _images(2).requires_grad_(True)
    out, mask = patch_occlusion(x, 0.25, patch_size=8, generator=_gen())
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(grad, (~_pixel_mask(mask, 8)).float())


def test_seeded_and_batch_independent() -> None:
    x = _images(3)
    a, ma = patch_occlusion(x, 0.2, patch_size=4, generator=_gen(7))
    b, mb = patch_occlusion(x, 0.2, patch_size=4, generator=_gen(7))
    assert torch.equal(a, b) and torch.equal(ma, mb)
    gens = [_gen(10 + i) for i in range(3)]
    batch, masks = patch_occlusion(x, 0.2, patch_size=4, generator=gens)
    for i in range(3):
        alone, mask = patch_occlusion(x[i : i + 1], 0.2, patch_size=4, generator=[_gen(10 + i)])
        assert torch.equal(batch[i : i + 1], alone) and torch.equal(masks[i : i + 1], mask)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ratio": -0.1}, "ratio"),
        ({"ratio": 1.5}, "ratio"),
        ({"ratio": math.nan}, "ratio"),
        ({"ratio": "half"}, "ratio"),
        ({"ratio": None}, "ratio"),
        ({"ratio": 0.1, "patch_size": 5}, "divide"),
        ({"ratio": 0.1, "patch_size": 0}, "patch_size"),
        ({"ratio": 0.1, "noise": "gaussian"}, "noise"),
        ({"ratio": 0.1, "patch_size": 8, "mask": torch.zeros(2, 3, 3, dtype=torch.bool)}, r"\(N, H/patch_size"),
        ({"ratio": 0.1, "patch_size": 8, "mask": torch.zeros(2, 4, 4, dtype=torch.int64)}, "bool"),
        ({"ratio": 0.1, "patch_size": 8, "mask": torch.full((2, 4, 4), 2.0)}, r"\[0, 1\]"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        patch_occlusion(_images(2), **kwargs)


def test_bad_images_raise() -> None:
    with pytest.raises(ValueError, match="floating point"):
        patch_occlusion(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), 0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        patch_occlusion(torch.full((1, 3, 32, 32), 2.0), 0.1)


def test_severity_wrapper_is_registered_monotone_and_uses_the_profile_patch() -> None:
    assert "patch_occlusion" in PERTURBATIONS and "random_patch_occlusion" in PERTURBATIONS
    x = _images(4)
    changed = []
    for severity in range(1, 6):
        out = perturb(x, "random_patch_occlusion", severity, generator=_gen(severity))
        # CIFAR profile: 4-px patches on an 8 x 8 grid
        occluded = (out != x).any(dim=1).float().mean()
        expected = math.floor(OCCLUSION_RATIOS[severity] * 64 + 0.5) / 64
        assert abs(float(occluded) - expected) < 1e-6
        changed.append(float(occluded))
    assert changed == sorted(changed)
    big = random_patch_occlusion(_images(1, 64), 2, generator=_gen(), profile="imagenet")  # 16-px patches
    assert abs(float((big != _images(1, 64)).any(dim=1).float().mean()) - 2 / 16) < 1e-6
    with pytest.raises(ValueError, match="severity"):
        random_patch_occlusion(x, 6)
