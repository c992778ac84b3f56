from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustlab.rng import make_generator
from robustlab.train import apply_crop_flip, random_crop_flip, sample_crop_flip_params


def _images(n: int = 6, size: int = 32) -> torch.Tensor:
    return torch.rand((n, 3, size, size), generator=torch.Generator().manual_seed(0))


def _reference(images: torch.Tensor, top, left, flip, padding: int) -> torch.Tensor:
    """The per-image definition: zero-pad, slice, mirror (what torchvision RandomCrop + flip do)."""
    h, w = images.shape[-2:]
    out = []
    for image, t, x, f in zip(images, top.tolist(), left.tolist(), flip.tolist(), strict=True):
        crop = F.pad(image, (padding,) * 4)[:, t : t + h, x : x + w]
        out.append(crop.flip(-1) if f else crop)
    return torch.stack(out)


def test_same_generator_state_same_output() -> None:
    images = _images()
    a = random_crop_flip(images, generator=make_generator(7))
    b = random_crop_flip(images, generator=make_generator(7))
    c = random_crop_flip(images, generator=make_generator(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_batched_result_equals_the_per_image_definition() -> None:
    images = _images(16)
    top, left, flip = sample_crop_flip_params(16, padding=4, generator=make_generator(3))
    assert top.min() >= 0 and top.max() <= 8 and left.min() >= 0 and left.max() <= 8
    expected = _reference(images, top, left, flip, padding=4)
    assert torch.equal(apply_crop_flip(images, top, left, flip, padding=4), expected)
    # random_crop_flip draws exactly these parameters from the same generator state
    assert torch.equal(random_crop_flip(images, generator=make_generator(3)), expected)


def test_edge_offsets_and_flips_on_hand_set_parameters() -> None:
    images = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).view(2, 1, 3, 3) / 17
    top, left, flip = torch.tensor([0, 2]), torch.tensor([0, 1]), torch.tensor([False, True])
    out = apply_crop_flip(images, top, left, flip, padding=1)
    # image 0 shifted down-right by one pixel with a zero border
    assert torch.equal(out[0, 0, 0], torch.zeros(3))
    assert torch.equal(out[0, 0, 1:, 1:], images[0, 0, :2, :2])
    # image 1: rows 1..2 of the original then a zero row, mirrored
    assert torch.equal(out[1, 0, :2], images[1, 0, 1:].flip(-1))
    assert torch.equal(out[1, 0, 2], torch.zeros(3))


def test_shape_range_dtype_and_no_padding_means_flip_only() -> None:
    images = _images(32).double()
    out = random_crop_flip(images, generator=make_generator(1))
    assert out.shape == images.shape and out.dtype == torch.float64
    assert out.min() >= 0 and out.max() <= 1
    flipped = random_crop_flip(images, generator=make_generator(2), padding=0)
    same = (flipped == images).flatten(1).all(1)
    mirrored = (flipped == images.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 0 < int(mirrored.sum()) < 32


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="N, C, H, W"):
        random_crop_flip(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="float"):
        random_crop_flip(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="padding"):
        random_crop_flip(torch.rand(1, 3, 8, 8), padding=-1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    images = _images()
    cpu = random_crop_flip(images, generator=make_generator(4))
    gpu = random_crop_flip(images.cuda(), generator=make_generator(4))
    assert gpu.device.type == "cuda" and torch.equal(gpu.cpu(), cpu)
