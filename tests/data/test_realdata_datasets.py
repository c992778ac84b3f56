"""Checks against the shared data folder (README facts: official order, exact labels, bit-exact subsets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robustlab.data import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    Preprocess,
    iter_batches,
    load_cifar_npz,
    load_dataset,
)

pytestmark = pytest.mark.realdata


def _as_float(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(pixels)).permute(0, 3, 1, 2).float() / 255


def test_cifar10_test_labels_pixels_and_provenance(data_root: Path) -> None:
    ds = load_dataset("cifar10", data_dir=data_root)
    assert len(ds) == 10_000 and ds.split == "test" and ds.class_names == list(CIFAR10_CLASSES)
    assert ds.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert any("JPEG-q75" in note for note in ds.info["notes"])
    with np.load(data_root / "cifar10" / "cifar10_test.npz") as z:
        stored, labels = z["images"], z["labels"]
    assert torch.equal(ds.labels, torch.from_numpy(labels))
    picks = [0, 1, 4_999, 9_999]
    assert torch.equal(ds.get_batch(picks)[0], _as_float(stored[picks]))


def test_cifar10_jpeg_container_decodes_to_the_stored_pixels(data_root: Path) -> None:
    ds = load_cifar_npz(data_root / "cifar10" / "cifar10_test_jpeg.npz")
    with np.load(data_root / "cifar10" / "cifar10_test.npz") as z:
        stored = z["images"]
    # the README: cifar10_test.npz is exactly these JPEGs decoded with Pillow, .convert("RGB")
    assert torch.equal(ds.get_batch(range(10_000))[0], _as_float(stored))


def test_cifar10_exact_subset_matches_jpeg_set_labels(data_root: Path) -> None:
    exact = load_dataset("cifar10_exact", data_dir=data_root)
    assert len(exact) == 932 and any("bit-exact" in note for note in exact.info["notes"])
    jpeg = load_dataset("cifar10", data_dir=data_root)
    assert torch.equal(exact.labels, jpeg.labels[:932])
    # JPEG-q75 approximates the exact pixels: close on average, never equal
    diff = (exact.get_batch(range(100))[0] - jpeg.get_batch(range(100))[0]).abs().mean()
    assert 0 < float(diff) < 0.05


def test_cifar10_train_is_official_order(data_root: Path) -> None:
    train = load_dataset("cifar10", split="train", data_dir=data_root)
    assert len(train) == 50_000 and train.labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    subset = load_dataset("cifar10_exact", split="train", data_dir=data_root)
    with np.load(data_root / "cifar10" / "cifar10_train_exact_subset.npz") as z:
        official = torch.from_numpy(z["indices"])
    assert torch.equal(subset.labels, train.labels[official])


def test_cifar100_sample(data_root: Path) -> None:
    ds = load_dataset("cifar100_sample", data_dir=data_root)
    assert len(ds) == 20 and ds.class_names == list(CIFAR100_CLASSES)
    assert ds.labels[:10].tolist() == [49, 33, 72, 51, 71, 92, 15, 14, 23, 0]


def test_imagenet_sample_indices_and_standard_crop(data_root: Path) -> None:
    ds = load_dataset("imagenet_sample", data_dir=data_root)
    assert len(ds) == 1000 and ds.num_classes == 1000
    assert ds.targets == [int(f.name[:3]) for f in ds.files] == list(range(1000))
    assert ds.class_ids is not None and all(
        f.stem.split("_")[1] == ds.class_ids[t] for f, t in zip(ds.files, ds.targets, strict=True)
    )
    assert ds.class_names[0] == "tench" and ds.class_names[134] == ds.class_names[517] == "crane"
    raw = ds.get_batch([0, 500])[0]
    assert raw.shape == (2, 3, 256, 256)
    # timm eval at 224 / 0.875: resize to 256 (a no-op here) then centre crop = pixels 16:240
    cropped = ds.with_preprocess(Preprocess.from_config({"input_size": (3, 224, 224), "crop_pct": 0.875}))
    assert cropped.info["preprocess"]["crop"] == [224, 224]
    batches = list(iter_batches(cropped, batch_size=2, indices=[0, 500, 999], num_workers=2))
    assert torch.equal(batches[0].images, raw[:, :, 16:240, 16:240])
    assert batches[1].labels.tolist() == [999]
