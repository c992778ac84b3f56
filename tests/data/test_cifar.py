from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from robustlab.data import (
    CIFAR100_CLASSES,
    iter_batches,
    load_cifar_batches,
    load_cifar_npz,
    load_dataset,
)


def _as_float(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255


# ------------------------------------------------------------------------------------------ .npz
def test_npz_pixels_labels_and_names_are_exact(tmp_path: Path, rng: np.random.Generator, dg: SimpleNamespace) -> None:
    images = dg.random_images(rng, 7)
    labels = np.array([3, 8, 8, 0, 6, 6, 1])
    path = tmp_path / "mini.npz"
    np.savez(path, images=images, labels=labels, class_names=np.array(dg.CIFAR10_NAMES))
    ds = load_cifar_npz(path)
    assert ds.name == "mini" and ds.split == "test" and len(ds) == 7
    assert ds.class_names == dg.CIFAR10_NAMES
    assert ds.info["source"] == str(path) and ds.info["format"] == "npz"
    (batch,) = list(iter_batches(ds, batch_size=16))
    assert torch.equal(batch.images, _as_float(images))
    assert batch.labels.tolist() == labels.tolist()


def test_npz_without_class_names_gets_cifar_names(
    tmp_path: Path, rng: np.random.Generator, dg: SimpleNamespace
) -> None:
    np.savez(tmp_path / "ten.npz", images=dg.random_images(rng, 2), labels=np.array([0, 9]))
    np.savez(tmp_path / "hundred.npz", images=dg.random_images(rng, 2), labels=np.array([0, 42]))
    assert load_cifar_npz(tmp_path / "ten.npz").class_names == dg.CIFAR10_NAMES
    assert load_cifar_npz(tmp_path / "hundred.npz").class_names == list(CIFAR100_CLASSES)


def test_shared_file_names_carry_provenance_notes(
    tmp_path: Path, rng: np.random.Generator, dg: SimpleNamespace
) -> None:
    path = tmp_path / "cifar10_test.npz"
    np.savez(path, images=dg.random_images(rng, 2), labels=np.array([3, 8]))
    assert any("JPEG-q75" in note for note in load_cifar_npz(path).info["notes"])


def test_jpeg_container_decodes_each_file_with_pil(
    tmp_path: Path, rng: np.random.Generator, dg: SimpleNamespace
) -> None:
    images = dg.random_images(rng, 5)
    labels = np.array([1, 2, 3, 4, 5])
    blobs = dg.write_jpeg_container(tmp_path / "c_jpeg.npz", images, labels)
    ds = load_cifar_npz(tmp_path / "c_jpeg.npz")
    expected = np.stack([dg.decode(b) for b in blobs])
    assert ds.info["format"] == "npz-jpeg" and any("JPEG" in n for n in ds.info["notes"])
    images_out, labels_out = ds.get_batch(range(5))
    assert torch.equal(images_out, _as_float(expected))
    assert labels_out.tolist() == labels.tolist()


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"pixels": np.zeros((2, 32, 32, 3), np.uint8), "labels": np.zeros(2, np.int64)}, "expected keys"),
        ({"images": np.zeros((2, 32, 32, 3), np.float32), "labels": np.zeros(2, np.int64)}, "uint8"),
        ({"images": np.zeros((2, 3, 32, 32), np.uint8), "labels": np.zeros(2, np.int64)}, "N, H, W, 3"),
        ({"images": np.zeros((2, 32, 32, 3), np.uint8), "labels": np.zeros(3, np.int64)}, "2 images but 3"),
        ({"images": np.zeros((2, 32, 32, 3), np.uint8), "labels": np.zeros(2, np.float32)}, "integer"),
        (
            {
                "images": np.zeros((2, 32, 32, 3), np.uint8),
                "labels": np.array([0, 5]),
                "class_names": ["a", "b"],
            },
            r"\[0, 2\)",
        ),
    ],
)
def test_malformed_npz_raises_naming_the_file(tmp_path: Path, arrays: dict, match: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=match) as err:
        load_cifar_npz(path)
    assert str(path) in str(err.value)


def test_unreadable_npz_files_raise_value_error(tmp_path: Path, rng: np.random.Generator, dg: SimpleNamespace) -> None:
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 this is no zip")
    bare = tmp_path / "bare.npz"
    with bare.open("wb") as f:
        np.save(f, np.zeros(3))
    truncated = tmp_path / "truncated.npz"
    np.savez(truncated, images=dg.random_images(rng, 50), labels=np.zeros(50, np.int64))
    truncated.write_bytes(truncated.read_bytes()[:2000])
    for path in (garbage, bare, truncated):
        with pytest.raises(ValueError, match=str(path)):
            load_cifar_npz(path)
    with pytest.raises(FileNotFoundError, match="images"):
        load_cifar_npz(tmp_path / "missing.npz")


def test_corrupt_jpeg_and_bad_offsets_raise(tmp_path: Path, rng: np.random.Generator, dg: SimpleNamespace) -> None:
    path = tmp_path / "c.npz"
    blobs = dg.write_jpeg_container(path, dg.random_images(rng, 3), np.array([0, 1, 2]))
    z = dict(np.load(path))
    broken = z["jpeg_bytes"].copy()
    start = len(blobs[0])
    broken[start : start + len(blobs[1])] = 7  # image 1 is no longer a JPEG
    np.savez(path, **{**z, "jpeg_bytes": broken})
    with pytest.raises(ValueError, match=r"c\.npz: image 1 is not a decodable JPEG"):
        load_cifar_npz(path)
    np.savez(path, **{**z, "offsets": z["offsets"][::-1].copy()})
    with pytest.raises(ValueError, match="offsets"):
        load_cifar_npz(path)
    np.savez(path, **{**z, "labels": z["labels"][:2]})
    with pytest.raises(ValueError, match="3 JPEG images but 2 labels"):
        load_cifar_npz(path)


# ------------------------------------------------------------------------------------------ python batches
def test_cifar10_batches_test_and_train_in_official_order(make_cifar10_batches, dg: SimpleNamespace) -> None:
    folder, arrays = make_cifar10_batches()
    test = load_cifar_batches(folder)
    assert test.name == "cifar10" and test.class_names == dg.CIFAR10_NAMES and len(test) == 12
    images, labels = test.get_batch(range(12))
    assert torch.equal(images, _as_float(arrays["test_batch"][0]))
    assert labels.tolist() == arrays["test_batch"][1].tolist()
    train = load_cifar_batches(folder, split="train")
    assert train.split == "train" and len(train) == 20
    expected = np.concatenate([arrays[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert torch.equal(train.get_batch(range(20))[0], _as_float(expected))
    assert train.labels.tolist() == np.concatenate([arrays[f"data_batch_{i}"][1] for i in range(1, 6)]).tolist()


def test_batch_rows_are_planar_rgb(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    row = np.zeros((1, 3072), np.uint8)
    row[0, 0] = 255  # red of pixel (0, 0)
    row[0, 1024 + 1] = 255  # green of pixel (0, 1)
    row[0, 2048 + 32] = 255  # blue of pixel (1, 0)
    (folder / "test_batch").write_bytes(pickle.dumps({"data": row, "labels": [4]}))  # python 3 str keys
    image, label = load_cifar_batches(folder)[0]
    assert label == 4
    assert image[:, 0, 0].tolist() == [1, 0, 0]
    assert image[:, 0, 1].tolist() == [0, 1, 0]
    assert image[:, 1, 0].tolist() == [0, 0, 1]
    assert float(image.sum()) == 3


def _write_cifar100(folder: Path, images: np.ndarray, fine: list[int], dg: SimpleNamespace) -> None:
    folder.mkdir(parents=True)
    entry = {b"data": dg.cifar_rows(images), b"fine_labels": fine, b"coarse_labels": [0] * len(fine)}
    (folder / "test").write_bytes(dg.py2_style_pickle(entry))
    names = [f"fine{i}".encode() for i in range(100)]
    (folder / "meta").write_bytes(dg.py2_style_pickle({b"fine_label_names": names, b"coarse_label_names": []}))


def test_cifar100_python_uses_fine_labels_and_meta_names(
    tmp_path: Path, rng: np.random.Generator, dg: SimpleNamespace
) -> None:
    images = dg.random_images(rng, 4)
    fine = [49, 33, 72, 51]
    _write_cifar100(tmp_path / "cifar-100-python", images, fine, dg)
    ds = load_cifar_batches(tmp_path / "cifar-100-python")
    assert ds.name == "cifar100" and ds.num_classes == 100 and ds.class_names[49] == "fine49"
    assert ds.labels.tolist() == fine
    assert torch.equal(ds.get_batch(range(4))[0], _as_float(images))
    by_name = load_dataset("cifar100", data_dir=tmp_path)
    assert by_name.name == "cifar100" and by_name.labels.tolist() == fine
    with pytest.raises(FileNotFoundError, match="cifar-100-python.*cifar100_sample"):
        load_dataset("cifar100", data_dir=tmp_path / "cifar-100-python" / "elsewhere")


def test_truncated_or_hostile_pickles_raise_value_error(make_cifar10_batches) -> None:
    folder, _ = make_cifar10_batches()
    path = folder / "test_batch"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ValueError, match="test_batch: not a readable CIFAR python batch"):
        load_cifar_batches(folder)

    class Hostile:
        def __reduce__(self):
            return (print, ("owned",))

    path.write_bytes(pickle.dumps({b"data": Hostile(), b"labels": []}))
    with pytest.raises(ValueError, match="builtins.print is not allowed"):
        load_cifar_batches(folder)


def test_batches_errors(tmp_path: Path, make_cifar10_batches) -> None:
    folder, _ = make_cifar10_batches()
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        load_cifar_batches(folder, split="train")
    with pytest.raises(ValueError, match="split"):
        load_cifar_batches(folder, split="val")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a CIFAR python batches directory"):
        load_cifar_batches(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        load_cifar_batches(tmp_path / "nowhere")
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(ValueError, match=r"\(N, 3072\)"):
        load_cifar_batches(folder)


# ------------------------------------------------------------------------------------------ front door
def test_named_cifar10_prefers_exact_batches_over_jpeg_npz(tmp_path: Path, rng, make_cifar10_batches, dg) -> None:
    (tmp_path / "cifar10").mkdir()
    np.savez(tmp_path / "cifar10" / "cifar10_test.npz", images=dg.random_images(rng, 3), labels=np.array([3, 8, 8]))
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.name == "cifar10" and len(ds) == 3 and ds.info["format"] == "npz"
    assert any("JPEG-q75" in n for n in ds.info["notes"])
    make_cifar10_batches(root=tmp_path)
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.info["format"] == "cifar-python" and len(ds) == 12


def test_named_cifar10_train_reads_jpeg_container(
    tmp_path: Path, rng: np.random.Generator, dg: SimpleNamespace
) -> None:
    (tmp_path / "cifar10").mkdir()
    labels = np.array([6, 9, 9, 4])
    dg.write_jpeg_container(tmp_path / "cifar10" / "cifar10_train_jpeg.npz", dg.random_images(rng, 4), labels)
    ds = load_dataset("cifar10", split="train", data_dir=tmp_path)
    assert ds.split == "train" and ds.labels.tolist() == labels.tolist()


def test_download_goes_through_torchvision(tmp_path: Path, monkeypatch, make_cifar10_batches) -> None:
    import torchvision.datasets

    calls = []

    def fake_cifar10(root: str, train: bool, download: bool) -> None:
        calls.append((root, train, download))
        make_cifar10_batches(root=Path(root))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_cifar10)
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_dataset("cifar10", data_dir=tmp_path)
    ds = load_dataset("cifar10", data_dir=tmp_path, download=True)
    assert calls == [(str(tmp_path), False, True)]
    assert ds.info["format"] == "cifar-python" and len(ds) == 12
    load_dataset("cifar10", data_dir=tmp_path, download=True)  # already there: no second download
    assert len(calls) == 1
