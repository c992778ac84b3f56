"""Tiny on-disk datasets in every layout robustlab.data reads, generated in ``tmp_path``."""

from __future__ import annotations

import csv
import io
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def random_images(rng: np.random.Generator, n: int, h: int = 32, w: int = 32) -> np.ndarray:
    return rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def py2_style_pickle(obj: object) -> bytes:
    """Pickle ``obj`` the way the official (python 2, numpy 1) CIFAR files reference numpy."""
    return pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> the official (N, 3072) rows: 1024 red, 1024 green, 1024 blue values."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1).copy()


@pytest.fixture
def make_cifar10_batches(tmp_path: Path, rng: np.random.Generator) -> Callable[..., tuple[Path, dict]]:
    """Write ``cifar-10-batches-py`` with ``n_test`` test and 5 x ``n_train`` train images."""

    def make(root: Path | None = None, n_test: int = 12, n_train: int = 4) -> tuple[Path, dict]:
        folder = (root or tmp_path) / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for file, n in [("test_batch", n_test)] + [(f"data_batch_{i}", n_train) for i in range(1, 6)]:
            images = random_images(rng, n)
            labels = rng.integers(0, 10, size=n)
            entry = {b"batch_label": file.encode(), b"labels": labels.tolist(), b"data": cifar_rows(images)}
            (folder / file).write_bytes(py2_style_pickle(entry))
            arrays[file] = (images, labels)
        meta = {b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_vis": 3072}
        (folder / "batches.meta").write_bytes(py2_style_pickle(meta))
        return folder, arrays

    return make


def write_jpeg_container(path: Path, images: np.ndarray, labels: np.ndarray, quality: int = 90) -> list[bytes]:
    """An ``.npz`` with ``jpeg_bytes``/``offsets``/``labels`` like the shared ``cifar10_*_jpeg.npz``."""
    blobs = []
    for image in images:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=quality)
        blobs.append(buf.getvalue())
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    jpeg_bytes = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    np.savez(path, jpeg_bytes=jpeg_bytes, offsets=offsets, labels=labels.astype(np.int64))
    return blobs


def decode(blob: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(blob)) as image:
        return np.asarray(image.convert("RGB"))


def write_image(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def dg() -> SimpleNamespace:
    """The helpers above, for test modules (importing a conftest by name is fragile)."""
    return SimpleNamespace(
        CIFAR10_NAMES=CIFAR10_NAMES,
        random_images=random_images,
        py2_style_pickle=py2_style_pickle,
        cifar_rows=cifar_rows,
        write_jpeg_container=write_jpeg_container,
        decode=decode,
        write_image=write_image,
    )


@pytest.fixture
def make_class_folder(tmp_path: Path, rng: np.random.Generator) -> Callable[..., tuple[Path, dict]]:
    """``root/<class>/<name>.png`` (lossless) with given sizes; returns the root and {path: pixels}."""

    def make(
        classes: Sequence[str] = ("n02", "n01", "n03"),
        per_class: int = 2,
        sizes: Sequence[tuple[int, int]] = ((20, 24),),
        root: Path | None = None,
        suffix: str = ".png",
    ) -> tuple[Path, dict[Path, np.ndarray]]:
        root = root or tmp_path / "folder"
        pixels: dict[Path, np.ndarray] = {}
        k = 0
        for cls in classes:
            for i in range(per_class):
                h, w = sizes[k % len(sizes)]
                k += 1
                path = root / cls / f"img_{i}{suffix}"
                pixels[path] = random_images(rng, 1, h, w)[0]
                write_image(path, pixels[path])
        return root, pixels

    return make


@pytest.fixture
def make_labels_csv(tmp_path: Path, rng: np.random.Generator) -> Callable[..., tuple[Path, list[dict]]]:
    """An ``imagenet_sample``-style folder: ``images/NNN_<wnid>.png`` plus ``labels.csv``."""

    def make(root: Path | None = None, indices: Sequence[int] = (0, 1, 7)) -> tuple[Path, list[dict]]:
        root = root or tmp_path / "imagenet_sample"
        rows = []
        for index in indices:
            wnid = f"n{index:08d}"
            file = f"{index:03d}_{wnid}.png"
            write_image(root / "images" / file, random_images(rng, 1, 16, 16)[0])
            rows.append({"file": file, "class_index": index, "wnid": wnid, "class_name": f"name{index}",
                         "source_file": f"{wnid}_x.JPEG"})  # fmt: skip
        with (root / "labels.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return root, rows

    return make


@pytest.fixture
def make_imagenet_c(tmp_path: Path, rng: np.random.Generator) -> Callable[..., Path]:
    """``root/<corruption>/<severity>/<wnid>/*.JPEG`` with 224 px images."""

    def make(
        corruptions: Sequence[str] = ("gaussian_noise", "fog"),
        severities: Sequence[int] = (1, 3),
        wnids: Sequence[str] = ("n01440764", "n01443537"),
        per_class: int = 1,
        size: int = 224,
    ) -> Path:
        root = tmp_path / "ImageNet-C"
        for corruption in corruptions:
            for severity in severities:
                for wnid in wnids:
                    for i in range(per_class):
                        write_image(
                            root / corruption / str(severity) / wnid / f"{wnid}_{i}.JPEG",
                            random_images(rng, 1, size, size)[0],
                        )
        return root

    return make
