from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustlab.data import load_dataset, load_digits


@pytest.fixture(scope="module")
def sklearn_digits():
    from sklearn.datasets import load_digits as sk_load_digits

    return sk_load_digits()


def test_splits_are_a_stratified_80_20_partition(sklearn_digits) -> None:
    train, test = load_digits("train"), load_digits("test")
    assert (len(train), len(test)) == (1437, 360)
    assert train.class_names == test.class_names == [str(i) for i in range(10)]
    counts = torch.bincount(test.labels, minlength=10).float()
    totals = torch.bincount(torch.from_numpy(sklearn_digits.target), minlength=10).float()
    assert torch.all((counts / totals - 0.2).abs() < 0.02)
    # every original image is in exactly one split
    all_images = torch.cat([train.get_batch(range(len(train)))[0], test.get_batch(range(len(test)))[0]])
    assert len(torch.unique(all_images.flatten(1), dim=0)) == len(torch.unique(
        torch.from_numpy(sklearn_digits.images).flatten(1), dim=0))  # fmt: skip


def test_pixels_are_upsampled_digits_replicated_to_rgb(sklearn_digits) -> None:
    test = load_digits("test")
    images, labels = test.get_batch(range(len(test)))
    assert images.shape == (360, 3, 32, 32) and images.dtype == torch.float32
    assert float(images.min()) >= 0 and float(images.max()) <= 1
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])
    # the first test image is some original digit, bilinearly upsampled from 8x8 values / 16
    grey = torch.from_numpy(sklearn_digits.images.astype(np.float32) / 16).unsqueeze(1)
    big = F.interpolate(grey, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1)[:, 0]
    match = torch.nonzero((big - images[0, 0]).abs().flatten(1).amax(1) < 1e-6).flatten()
    assert len(match) >= 1 and int(sklearn_digits.target[int(match[0])]) == int(labels[0])


def test_deterministic_and_recorded() -> None:
    a, b = load_dataset("digits"), load_digits("test")
    assert torch.equal(a.get_batch(range(50))[0], b.get_batch(range(50))[0])
    assert torch.equal(a.labels, b.labels)
    assert a.name == "digits" and a.split == "test" and a.info["source"] == "sklearn.datasets.load_digits"
    with pytest.raises(ValueError, match="split"):
        load_digits("val")
