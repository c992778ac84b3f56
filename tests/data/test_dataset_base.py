from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from robustlab.data import ArrayDataset, Preprocess, Subset, iter_batches


def _dataset(rng: np.random.Generator, n: int = 10, **kwargs) -> tuple[ArrayDataset, np.ndarray]:
    pixels = rng.integers(0, 256, size=(n, 8, 6, 3), dtype=np.uint8)
    labels = np.arange(n) % 3
    ds = ArrayDataset(pixels, labels, class_names=["a", "b", "c"], name="toy", **kwargs)
    return ds, pixels


def test_uint8_batches_are_exact_pixels_over_255_in_order(rng: np.random.Generator) -> None:
    ds, pixels = _dataset(rng)
    images, labels = ds.get_batch([7, 2, 5])
    assert images.dtype == torch.float32 and images.shape == (3, 3, 8, 6)
    expected = torch.from_numpy(pixels[[7, 2, 5]]).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(images, expected)
    assert labels.tolist() == [1, 2, 2] and labels.dtype == torch.int64
    image, label = ds[4]
    assert torch.equal(image, expected.new_tensor(pixels[4]).permute(2, 0, 1) / 255) and label == 1


def test_float_images_pass_through() -> None:
    images = torch.rand(4, 3, 5, 5)
    ds = ArrayDataset(images, [0, 1, 0, 1], class_names=["x", "y"], name="f")
    got, labels = ds.get_batch([3, 0])
    assert torch.equal(got, images[[3, 0]]) and labels.tolist() == [1, 0]


@pytest.mark.parametrize(
    ("images", "labels", "match"),
    [
        (np.zeros((2, 4, 4), np.uint8), [0, 0], "4-D"),
        (np.zeros((2, 3, 4, 4), np.uint8), [0, 0], "H, W, C"),
        (np.zeros((2, 4, 4, 3), np.uint8), [0], "labels"),
    ],
)
def test_array_dataset_validates(images, labels, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ArrayDataset(images, labels, class_names=["a"], name="bad")


def test_iter_batches_covers_in_order_with_partial_last(rng: np.random.Generator) -> None:
    ds, pixels = _dataset(rng, n=10)
    batches = list(iter_batches(ds, batch_size=4))
    assert [len(b.indices) for b in batches] == [4, 4, 2]
    assert torch.cat([b.indices for b in batches]).tolist() == list(range(10))
    stacked = torch.cat([b.images for b in batches])
    assert torch.equal(stacked, torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255)
    picked = list(iter_batches(ds, batch_size=2, indices=[9, 1, 4]))
    assert torch.cat([b.indices for b in picked]).tolist() == [9, 1, 4]
    assert torch.cat([b.labels for b in picked]).tolist() == [0, 1, 1]


def test_iter_batches_rejects_bad_arguments(rng: np.random.Generator) -> None:
    ds, _ = _dataset(rng, n=3)
    with pytest.raises(ValueError, match="batch_size"):
        next(iter_batches(ds, batch_size=0))
    with pytest.raises(ValueError, match="indices"):
        next(iter_batches(ds, indices=[0, 3]))
    with pytest.raises(ValueError, match="num_workers"):
        next(iter_batches(ds, num_workers=-1))


def test_subset_batches_report_original_indices(rng: np.random.Generator) -> None:
    ds, pixels = _dataset(rng, n=10)
    sub = Subset(ds, [8, 3, 5])
    assert len(sub) == 3 and sub.info["subset"] == 3 and sub.class_names == ds.class_names
    (batch,) = list(iter_batches(sub, batch_size=8))
    assert batch.indices.tolist() == [8, 3, 5]
    assert torch.equal(batch.images, ds.get_batch([8, 3, 5])[0])
    # a subset of a subset still reports indices of the underlying dataset
    (inner,) = list(iter_batches(Subset(sub, [2, 0]), batch_size=8))
    assert inner.indices.tolist() == [5, 8]
    assert inner.labels.tolist() == [2, 2]


def test_preprocess_is_recorded_applied_with_pil_and_replaced_not_composed(rng: np.random.Generator) -> None:
    ds, pixels = _dataset(rng, n=3)
    p = Preprocess(resize=12, crop=10, interpolation="bicubic")
    pre = ds.with_preprocess(p)
    assert ds.info["preprocess"] is None
    assert pre.info["preprocess"] == p.describe()
    images, _ = pre.get_batch([0, 2])
    expected = np.stack([np.asarray(p(Image.fromarray(pixels[i]))) for i in (0, 2)])
    assert torch.equal(images, torch.from_numpy(expected).permute(0, 3, 1, 2).float() / 255)
    # applying again replaces the preprocessing: the pixels do not change
    again = pre.with_preprocess(p)
    assert torch.equal(again.get_batch([0, 2])[0], images)
    assert torch.equal(pre.with_preprocess(None).get_batch([0])[0], ds.get_batch([0])[0])
    # subsets forward it
    assert torch.equal(Subset(ds, [2]).with_preprocess(p).get_batch([0])[0], images[1:])


def test_head_names_the_subset_and_keeps_original_indices() -> None:
    from robustlab.data import head, load_dataset

    digits = load_dataset("digits")
    first = head(digits, 5)
    assert len(first) == 5 and first.name == f"{digits.name}[:5]"
    assert first.original_indices([4]) == [4]
    assert head(digits, None) is digits and head(digits, len(digits) + 3) is digits
    with pytest.raises(ValueError, match=">= 1"):
        head(digits, 0)
