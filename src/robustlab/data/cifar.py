"""CIFAR-10 / CIFAR-100 readers: ``.npz`` arrays, JPEG-container ``.npz`` files, official python batches.

Every reader returns an :class:`~robustlab.data.ArrayDataset` that keeps the uint8 HWC pixels in memory and
converts them to float ``(N, 3, 32, 32)`` in [0, 1] per batch.
"""

from __future__ import annotations

import importlib
import io
import logging
import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from robustlab.data._base import ArrayDataset
from robustlab.data.preprocess import Preprocess

log = logging.getLogger(__name__)

# Krizhevsky 2009, batches.meta "label_names" (index order)
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
# cifar-100-python/meta "fine_label_names": alphabetical fine-label order
CIFAR100_CLASSES: tuple[str, ...] = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl",
    "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair",
    "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin",
    "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp",
    "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck",
    "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television",
    "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf",
    "woman", "worm",
)  # fmt: skip

# What the files of the shared data folder are (see its README); recorded in dataset.info["notes"].
_KNOWN_FILE_NOTES: dict[str, str] = {
    "cifar10_test.npz": (
        "JPEG-q75 approximated pixels (mean PSNR 30.5 dB vs. the true pixels; not clean CIFAR-10); "
        "labels and order exact"
    ),
    "cifar10_test_jpeg.npz": "JPEG-q75 approximated pixels decoded with Pillow; labels and order exact",
    "cifar10_train_jpeg.npz": ("JPEG-q75 approximated pixels decoded with Pillow; official train order, labels exact"),
    "cifar10_test_exact_first932.npz": "bit-exact official pixels of test indices 0..931",
    "cifar10_train_exact_subset.npz": (
        "bit-exact official train pixels of rows 0..931 of each batch (official indices 0-931, "
        "10000-10931, ...); dataset index i is row i of this subset, not the official train index"
    ),
    "cifar100_test_first20.npz": "bit-exact official pixels of CIFAR-100 test indices 0..19 (fine labels)",
}

CIFAR10_BATCHES = "cifar-10-batches-py"
CIFAR100_BATCHES = "cifar-100-python"
_SPLITS = ("test", "train")


def _default_class_names(num_labels: int) -> list[str]:
    if num_labels <= 10:
        return list(CIFAR10_CLASSES)
    if num_labels <= 100:
        return list(CIFAR100_CLASSES)
    return [str(i) for i in range(num_labels)]


def _check_split(split: str) -> str:
    if split not in _SPLITS:
        raise ValueError(f"CIFAR split must be one of {', '.join(_SPLITS)}, got {split!r}")
    return split


def _check_arrays(images: np.ndarray, labels: np.ndarray, path: Path, num_classes: int) -> np.ndarray:
    """Validate uint8 NHWC images and integer labels; return labels as int64."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{path}: 'images' must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: 'labels' must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if len(labels) != len(images):
        raise ValueError(f"{path}: {len(images)} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{path}: labels must lie in [0, {num_classes}) for {num_classes} class names, "
            f"got range [{labels.min()}, {labels.max()}]"
        )
    return labels.astype(np.int64, copy=False)


# ------------------------------------------------------------------------------------------ .npz files
def decode_jpeg_container(jpeg_bytes: np.ndarray, offsets: np.ndarray, *, source: str | Path) -> np.ndarray:
    """Decode concatenated JPEG files (image ``i`` = ``jpeg_bytes[offsets[i]:offsets[i + 1]]``) with Pillow.

    Args:
        jpeg_bytes: uint8 ``(B,)`` concatenated files.
        offsets: int ``(N + 1,)`` start offsets plus the final end offset.
        source: file name used in error messages.

    Returns:
        uint8 RGB pixels.

    Shape:
        ``(N, H, W, 3)``; every image must have the size of the first.

    Raises:
        ValueError: malformed offsets, an undecodable image or images of different sizes.
    """
    if jpeg_bytes.dtype != np.uint8 or jpeg_bytes.ndim != 1:
        raise ValueError(f"{source}: 'jpeg_bytes' must be a 1-D uint8 array, got {jpeg_bytes.dtype} {jpeg_bytes.shape}")
    if offsets.ndim != 1 or not np.issubdtype(offsets.dtype, np.integer) or len(offsets) < 1:
        raise ValueError(f"{source}: 'offsets' must be a 1-D integer array, got {offsets.dtype} {offsets.shape}")
    if offsets[0] != 0 or offsets[-1] != len(jpeg_bytes) or np.any(np.diff(offsets) <= 0):
        raise ValueError(
            f"{source}: 'offsets' must increase from 0 to len(jpeg_bytes)={len(jpeg_bytes)}, "
            f"got {offsets[0]}..{offsets[-1]}"
        )
    n = len(offsets) - 1
    # one bytes object sliced through a memoryview: no per-image copy of the buffer
    buffer = memoryview(jpeg_bytes.tobytes())
    starts = offsets[:-1].tolist()
    ends = offsets[1:].tolist()
    out: np.ndarray | None = None
    for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
        try:
            with Image.open(io.BytesIO(buffer[start:end])) as image:
                pixels = np.asarray(image.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as err:
            raise ValueError(f"{source}: image {i} is not a decodable JPEG ({err})") from None
        if out is None:
            out = np.empty((n, *pixels.shape), dtype=np.uint8)
        elif pixels.shape != out.shape[1:]:
            raise ValueError(f"{source}: image {i} has shape {pixels.shape}, image 0 has {out.shape[1:]}")
        out[i] = pixels
    return out if out is not None else np.empty((0, 32, 32, 3), dtype=np.uint8)


def _read_npz(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays of ``keys`` present in the ``.npz`` at ``path`` (no pickles).

    Raises:
        ValueError: not a readable ``.npz`` archive (a bare ``.npy``, a pickle, a corrupt or truncated zip).
    """
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: expected an .npz archive of named arrays, got a single {type(z).__name__}")
    try:
        with z:
            return {k: z[k] for k in keys if k in z.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err})") from None


def load_cifar_npz(
    path: str | Path,
    *,
    name: str | None = None,
    split: str = "test",
    preprocess: Preprocess | None = None,
    notes: Sequence[str] = (),
) -> ArrayDataset:
    """Read a CIFAR-style ``.npz``: ``images``/``labels`` arrays or a JPEG container.

    Layouts:
        * ``images`` uint8 ``(N, H, W, 3)`` and ``labels`` int ``(N,)``;
        * ``jpeg_bytes`` uint8 ``(B,)``, ``offsets`` int ``(N + 1,)``, ``labels`` ``(N,)``: decoded once
          with Pillow (``.convert("RGB")``).

        Both may carry ``class_names`` ``(K,)``; otherwise CIFAR-10 names (labels < 10) or CIFAR-100 names.

    Args:
        path: the ``.npz`` file.
        name: dataset name (default: the file stem).
        split: split recorded in the store.
        preprocess: optional resize / crop applied per batch.
        notes: extra provenance notes for ``info["notes"]``.

    Returns:
        An in-memory dataset; ``info`` records the source, the layout and notes such as
        "JPEG-q75 approximated pixels" for the shared ``cifar10_test.npz``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a readable ``.npz``, missing keys, wrong shapes / dtypes or an undecodable JPEG.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist; expected an .npz with 'images' (uint8 N,H,W,3) and 'labels', "
            "or a JPEG container with 'jpeg_bytes', 'offsets' and 'labels'"
        )
    arrays = _read_npz(path, ("images", "labels", "jpeg_bytes", "offsets", "class_names"))
    if {"images", "labels"} <= arrays.keys():
        layout = "npz"
        images, labels = arrays["images"], arrays["labels"]
    elif {"jpeg_bytes", "offsets", "labels"} <= arrays.keys():
        layout = "npz-jpeg"
        images = decode_jpeg_container(arrays["jpeg_bytes"], arrays["offsets"], source=path)
        labels = arrays["labels"]
    else:
        raise ValueError(
            f"{path}: expected keys 'images' and 'labels' (uint8 N,H,W,3 arrays) or 'jpeg_bytes', "
            f"'offsets' and 'labels' (JPEG container), got {sorted(arrays)}"
        )
    class_names = [str(c) for c in arrays["class_names"]] if "class_names" in arrays else None
    if layout == "npz-jpeg" and len(images) != len(labels):
        raise ValueError(f"{path}: {len(images)} JPEG images but {len(labels)} labels")
    if class_names is None:
        class_names = _default_class_names(int(labels.max()) + 1 if len(labels) else 10)
    labels = _check_arrays(images, np.asarray(labels), path, len(class_names))
    all_notes = [*notes]
    if path.name in _KNOWN_FILE_NOTES:
        all_notes.append(_KNOWN_FILE_NOTES[path.name])
    elif layout == "npz-jpeg":
        all_notes.append("pixels decoded from JPEG files (lossy)")
    info: dict[str, Any] = {"source": str(path), "format": layout, "notes": all_notes}
    return ArrayDataset(
        images,
        labels,
        class_names=class_names,
        name=name or path.stem,
        split=split,
        info=info,
        preprocess=preprocess,
    )


# -------------------------------------------------------------------------------------- python batches
# Globals an official CIFAR pickle may reference (numpy array reconstruction). Anything else is refused, so a
# tampered "batch" file cannot run code.
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that only rebuilds numpy arrays, lists, dicts, strings and numbers."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch file")
        if module.startswith("numpy.core"):
            # Python-2 era files name numpy.core; numpy 2 moved it to numpy._core
            try:
                return getattr(importlib.import_module("numpy._core" + module[len("numpy.core") :]), name)
            except ImportError:
                pass
        return super().find_class(module, name)


def _read_pickle(path: Path) -> dict[bytes, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the CIFAR python batches directory")
    try:
        with path.open("rb") as f:
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise ValueError(f"{path}: not a readable CIFAR python batch (truncated or corrupt?): {err}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: a CIFAR python batch must hold a dict, got {type(obj).__name__}")
    # keys are bytes for the official (python 2) files, str for files pickled by python 3
    return {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}


def _batch_arrays(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    entry = _read_pickle(path)
    if b"data" not in entry or label_key not in entry:
        raise ValueError(f"{path}: expected keys b'data' and {label_key!r}, got {sorted(repr(k) for k in entry)}")
    data = np.asarray(entry[b"data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: b'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    labels = np.asarray(entry[label_key], dtype=np.int64)
    if labels.shape != (len(data),):
        raise ValueError(f"{path}: {len(data)} images but labels of shape {labels.shape}")
    # rows hold 1024 red, then green, then blue values of a 32x32 image
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def detect_cifar_batches(path: str | Path) -> str | None:
    """``"cifar10"`` or ``"cifar100"`` if ``path`` is an official python batches directory, else ``None``."""
    path = Path(path)
    if (path / "test_batch").is_file() or (path / "data_batch_1").is_file():
        return "cifar10"
    if (path / "meta").is_file() and ((path / "test").is_file() or (path / "train").is_file()):
        return "cifar100"
    return None


def load_cifar_batches(
    path: str | Path,
    *,
    split: str = "test",
    name: str | None = None,
    preprocess: Preprocess | None = None,
) -> ArrayDataset:
    """Read the official python batches: ``cifar-10-batches-py/`` or ``cifar-100-python/`` (fine labels).

    Args:
        path: the batches directory (``test_batch``, ``data_batch_1..5``, ``batches.meta`` for CIFAR-10;
            ``test``, ``train``, ``meta`` for CIFAR-100).
        split: ``"test"`` or ``"train"`` (CIFAR-10 train = ``data_batch_1..5`` concatenated, the official
            order).
        name: dataset name (default ``"cifar10"`` / ``"cifar100"``).
        preprocess: optional resize / crop applied per batch.

    Returns:
        An in-memory dataset with the exact official pixels.

    Shape:
        images ``(N, 3, 32, 32)`` per batch; N = 10,000 (test) or 50,000 (train).

    Raises:
        FileNotFoundError: ``path`` or one of its batch files is missing.
        ValueError: not a batches directory, a truncated / corrupt pickle or wrong shapes.
    """
    path = Path(path)
    split = _check_split(split)
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path} does not exist; expected a {CIFAR10_BATCHES}/ or {CIFAR100_BATCHES}/ directory "
            "(torchvision.datasets.CIFAR10(root, download=True) creates one)"
        )
    kind = detect_cifar_batches(path)
    if kind is None:
        raise ValueError(
            f"{path}: not a CIFAR python batches directory (expected test_batch / data_batch_1..5 for "
            "CIFAR-10 or test / train / meta for CIFAR-100)"
        )
    if kind == "cifar10":
        files = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
        parts = [_batch_arrays(path / f, b"labels") for f in files]
        meta_path = path / "batches.meta"
        names = list(CIFAR10_CLASSES)
        if meta_path.is_file():
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in _read_pickle(meta_path)[b"label_names"]]
    else:
        files = [split]
        parts = [_batch_arrays(path / split, b"fine_labels")]
        meta = _read_pickle(path / "meta")
        if b"fine_label_names" not in meta:
            raise ValueError(f"{path / 'meta'}: expected key b'fine_label_names'")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[b"fine_label_names"]]
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    labels = _check_arrays(images, labels, path, len(names))
    info: dict[str, Any] = {
        "source": str(path),
        "format": "cifar-python",
        "files": files,
        "notes": ["official lossless pixels"] + (["fine labels"] if kind == "cifar100" else []),
    }
    return ArrayDataset(
        images, labels, class_names=names, name=name or kind, split=split, info=info, preprocess=preprocess
    )


def download_cifar(root: str | Path, *, dataset: str = "cifar10", split: str = "test") -> Path:
    """Download the official python batches with torchvision into ``root`` and return the batches directory.

    Args:
        root: download folder; the batches land in ``root/cifar-10-batches-py`` or ``root/cifar-100-python``.
        dataset: ``"cifar10"`` or ``"cifar100"``.
        split: ``"test"`` or ``"train"``.

    Returns:
        The batches directory, ready for :func:`load_cifar_batches`.

    Raises:
        ValueError: an unknown ``dataset``.
        RuntimeError: torchvision could not download (no network); the message says where to put the files.
    """
    if dataset not in ("cifar10", "cifar100"):
        raise ValueError(f"download_cifar: dataset must be 'cifar10' or 'cifar100', got {dataset!r}")
    split = _check_split(split)
    import torchvision.datasets  # lazy: heavy import, only for downloads

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    factory = torchvision.datasets.CIFAR10 if dataset == "cifar10" else torchvision.datasets.CIFAR100
    folder = CIFAR10_BATCHES if dataset == "cifar10" else CIFAR100_BATCHES
    log.info("downloading %s (%s) into %s with torchvision", dataset, split, root)
    try:
        factory(root=str(root), train=split == "train", download=True)
    except (OSError, RuntimeError) as err:
        raise RuntimeError(
            f"could not download {dataset} into {root} ({err}); without network, place {folder}/ there yourself"
        ) from err
    return root / folder
