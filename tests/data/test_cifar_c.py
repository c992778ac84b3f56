from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robustlab.data import (
    CIFAR100_CLASSES,
    iter_batches,
    list_cifar_c_corruptions,
    load_cifar_c,
    load_dataset,
)

N = 50_000  # the released geometry: 5 severities x 10,000 test images


@pytest.fixture(scope="module")
def full_size_cifar_c(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real-geometry CIFAR-10-C folder: (50000, 32, 32, 3) files, sparse on disk, with marked rows."""
    root = tmp_path_factory.mktemp("data") / "CIFAR-10-C"
    root.mkdir()
    images = np.lib.format.open_memmap(root / "gaussian_noise.npy", mode="w+", dtype=np.uint8, shape=(N, 32, 32, 3))
    for s in range(1, 6):
        images[(s - 1) * 10_000] = 10 * s  # first row of each severity block
        images[s * 10_000 - 1] = 10 * s + 1  # last row
        images[(s - 1) * 10_000 + 1, 2, 3] = (s, 2 * s, 3 * s)  # one pixel with distinct channels
    images.flush()
    del images
    np.save(root / "labels.npy", (np.arange(N) * 7 % 10).astype(np.uint8))  # the released labels are uint8
    np.save(root / "fog.npy", np.zeros((10, 32, 32, 3), np.uint8))  # only its header is read below
    return root


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_severity_selects_block_of_rows(full_size_cifar_c: Path, severity: int) -> None:
    ds = load_cifar_c(full_size_cifar_c, "gaussian_noise", severity)
    start = (severity - 1) * 10_000
    assert len(ds) == 10_000
    assert ds.name == "cifar10c" and ds.class_names[0] == "airplane"
    assert ds.info["corruption"] == "gaussian_noise" and ds.info["severity"] == severity
    assert ds.info["rows"] == [start, start + 10_000]
    images, labels = ds.get_batch([0, 1, 9_999])
    assert torch.all(images[0] == (10 * severity) / 255)
    assert torch.all(images[2] == (10 * severity + 1) / 255)
    assert (images[1, :, 2, 3] * 255).tolist() == [severity, 2 * severity, 3 * severity]
    assert labels.dtype == torch.int64
    assert labels.tolist() == [(start * 7) % 10, ((start + 1) * 7) % 10, ((start + 9_999) * 7) % 10]


def test_block_stays_memory_mapped(full_size_cifar_c: Path) -> None:
    ds = load_cifar_c(full_size_cifar_c, "gaussian_noise", 4)
    (batch,) = list(iter_batches(ds, batch_size=4, indices=[0, 5000, 9999, 1]))
    assert batch.indices.tolist() == [0, 5000, 9999, 1]
    assert isinstance(ds._images, np.memmap)  # nothing but the batch rows was read


def test_list_corruptions(full_size_cifar_c: Path) -> None:
    assert list_cifar_c_corruptions(full_size_cifar_c) == ["fog", "gaussian_noise"]


def test_unknown_corruption_suggests_close_matches(full_size_cifar_c: Path) -> None:
    with pytest.raises(ValueError, match="Did you mean 'gaussian_noise'"):
        load_cifar_c(full_size_cifar_c, "gausian_noise", 1)
    with pytest.raises(FileNotFoundError, match="snow.npy is missing"):
        load_cifar_c(full_size_cifar_c, "snow", 1)  # a released corruption whose file is absent


@pytest.mark.parametrize("severity", [0, 6, "3", 2.5, True])
def test_bad_severity_raises(full_size_cifar_c: Path, severity: object) -> None:
    with pytest.raises(ValueError, match="severity"):
        load_cifar_c(full_size_cifar_c, "gaussian_noise", severity)  # type: ignore[arg-type]


def _small(root: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    root.mkdir(exist_ok=True)
    np.save(root / "contrast.npy", images)
    np.save(root / "labels.npy", labels)
    return root


@pytest.mark.parametrize(
    ("images", "labels", "match"),
    [
        (np.zeros((10, 4, 4, 3), np.float32), np.zeros(10, np.int64), "uint8"),
        (np.zeros((10, 3, 4, 4), np.uint8), np.zeros(10, np.int64), "N, H, W, 3"),
        (np.zeros((12, 4, 4, 3), np.uint8), np.zeros(12, np.int64), "5 equal severity blocks"),
        (np.zeros((10, 4, 4, 3), np.uint8), np.zeros(15, np.int64), "5 equal severity blocks"),
        (np.zeros((10, 4, 4, 3), np.uint8), np.zeros(10, np.float64), "integer"),
    ],
)
def test_malformed_files_raise_naming_the_file(tmp_path: Path, images, labels, match: str) -> None:
    root = _small(tmp_path / "c", images, labels)
    with pytest.raises(ValueError, match=match) as err:
        load_cifar_c(root, "contrast", 1)
    assert str(root) in str(err.value)


def test_truncated_npy_and_missing_labels(tmp_path: Path) -> None:
    root = _small(tmp_path / "c", np.zeros((10, 4, 4, 3), np.uint8), np.zeros(10, np.int64))
    data = (root / "contrast.npy").read_bytes()
    (root / "contrast.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"contrast\.npy: not a readable \.npy"):
        load_cifar_c(root, "contrast", 1)
    (root / "labels.npy").unlink()
    with pytest.raises(FileNotFoundError, match="labels.npy"):
        load_cifar_c(root, "contrast", 1)
    with pytest.raises(FileNotFoundError, match="CIFAR-10-C"):
        load_cifar_c(tmp_path / "nowhere", "contrast", 1)


def test_cifar100_c_gets_cifar100_names(tmp_path: Path) -> None:
    labels = np.tile(np.array([99, 3]), 5)
    root = _small(tmp_path / "CIFAR-100-C", np.zeros((10, 4, 4, 3), np.uint8), labels)
    ds = load_cifar_c(root, "contrast", 5)
    assert ds.name == "cifar100c" and ds.class_names == list(CIFAR100_CLASSES)
    assert ds.labels.tolist() == [99, 3]


def test_front_door_by_name_and_by_path(full_size_cifar_c: Path) -> None:
    root = full_size_cifar_c.parent
    by_name = load_dataset("cifar10c", data_dir=root, corruption="gaussian_noise", severity=2)
    assert by_name.name == "cifar10c" and by_name.info["severity"] == 2
    assert torch.all(by_name[0][0] == 20 / 255)
    by_dir = load_dataset(str(full_size_cifar_c), corruption="gaussian_noise", severity=3)
    assert torch.all(by_dir[0][0] == 30 / 255)
    by_file = load_dataset(full_size_cifar_c / "gaussian_noise.npy", severity=5)
    assert torch.all(by_file[0][0] == 50 / 255)
    with pytest.raises(ValueError, match="pass corruption= and severity=.*fog, gaussian_noise"):
        load_dataset("cifar10c", data_dir=root)
    with pytest.raises(ValueError, match="pass corruption= and severity="):
        load_dataset(full_size_cifar_c, corruption="fog")
    with pytest.raises(ValueError, match="holds corruption 'gaussian_noise'"):
        load_dataset(full_size_cifar_c / "gaussian_noise.npy", corruption="fog", severity=1)
    with pytest.raises(ValueError, match="test split"):
        load_dataset("cifar10c", data_dir=root, split="train", corruption="fog", severity=1)
