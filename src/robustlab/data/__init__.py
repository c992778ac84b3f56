"""Dataset readers: every dataset yields float ``(N, 3, H, W)`` images in [0, 1] and int64 labels.

:func:`load_dataset` is the front door. It takes a known name (:func:`list_datasets`) resolved under
``data_dir`` or ``$ROBUSTLAB_DATA``, or a filesystem path whose layout it detects: a CIFAR ``.npz``, the
official python batches, a CIFAR-10-C / CIFAR-100-C folder, an ImageNet-C tree, a ``labels.csv`` folder or a
class-per-folder tree. The embedded ``"digits"`` needs neither data nor network.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from robustlab._checks import check_severity
from robustlab._registry import close_matches_message
from robustlab.data._base import ArrayDataset, Batch, ImageDataset, Subset, fit_to_model, head, iter_batches
from robustlab.data.cifar import (
    CIFAR10_BATCHES,
    CIFAR10_CLASSES,
    CIFAR100_BATCHES,
    CIFAR100_CLASSES,
    detect_cifar_batches,
    download_cifar,
    load_cifar_batches,
    load_cifar_npz,
)
from robustlab.data.cifar_c import CIFAR_C_CORRUPTIONS, list_cifar_c_corruptions, load_cifar_c
from robustlab.data.class_match import match_model_classes
from robustlab.data.digits import load_digits
from robustlab.data.folder import (
    FolderDataset,
    list_imagenet_c_corruptions,
    load_coop_split,
    load_image_folder,
    load_imagenet_c,
    load_labels_csv_folder,
)
from robustlab.data.preprocess import Preprocess

__all__ = [
    "ArrayDataset",
    "Batch",
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "CIFAR_C_CORRUPTIONS",
    "DATA_ENV",
    "FolderDataset",
    "ImageDataset",
    "Preprocess",
    "Subset",
    "describe_datasets",
    "fit_to_model",
    "head",
    "download_cifar",
    "iter_batches",
    "list_cifar_c_corruptions",
    "list_datasets",
    "list_imagenet_c_corruptions",
    "load_cifar_batches",
    "load_cifar_c",
    "load_cifar_npz",
    "load_coop_split",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "load_imagenet_c",
    "load_labels_csv_folder",
    "match_model_classes",
]

log = logging.getLogger(__name__)

DATA_ENV = "ROBUSTLAB_DATA"
_HOW_TO_POINT = f"set {DATA_ENV} or pass data_dir (--data-dir on the command line)"


@dataclass(frozen=True)
class _Request:
    """The arguments of one :func:`load_dataset` call, after validation."""

    root: Path | None
    split: str
    preprocess: Preprocess | None
    download: bool
    corruption: str | None
    severity: int | None


@dataclass(frozen=True)
class _Named:
    description: str
    splits: tuple[str, ...]
    load: Callable[[_Request], ImageDataset]
    corrupted: bool = False  # takes corruption + severity
    downloadable: bool = False


def _first_existing(candidates: list[Path]) -> Path | None:
    return next((p for p in candidates if p.exists()), None)


def _missing(name: str, req: _Request, layout: str, candidates: list[Path], download: bool = False) -> Exception:
    where = (
        "looked for " + ", ".join(str(c) for c in candidates)
        if req.root is not None
        else f"no data folder given ({DATA_ENV} is unset and data_dir is None)"
    )
    hint = "; or pass download=True to fetch it with torchvision" if download else ""
    how = _HOW_TO_POINT[0].upper() + _HOW_TO_POINT[1:]
    return FileNotFoundError(f"{name} ({req.split}) needs {layout}: {where}. {how}{hint}.")


def _cifar_batches_candidates(root: Path, folder: str, subdir: str) -> list[Path]:
    return [root / folder, root / subdir / folder, root]


def _load_cifar(req: _Request, kind: str) -> ImageDataset:
    folder, subdir = (CIFAR10_BATCHES, "cifar10") if kind == "cifar10" else (CIFAR100_BATCHES, "cifar100")
    if req.root is not None:
        # the official lossless batches win over the JPEG-approximated npz files when both are present
        for path in _cifar_batches_candidates(req.root, folder, subdir):
            if path.is_dir() and detect_cifar_batches(path) == kind:
                log.info("%s: reading official python batches from %s", kind, path)
                return load_cifar_batches(path, split=req.split, name=kind, preprocess=req.preprocess)
        if kind == "cifar10":
            file = "cifar10_test.npz" if req.split == "test" else "cifar10_train_jpeg.npz"
            found = _first_existing([req.root / "cifar10" / file, req.root / file])
            if found is not None:
                log.info("cifar10: reading %s (JPEG-approximated pixels)", found)
                return load_cifar_npz(found, name=kind, split=req.split, preprocess=req.preprocess)
    if req.download:
        if req.root is None:
            raise FileNotFoundError(f"download=True needs a folder to download into: {_HOW_TO_POINT}")
        path = download_cifar(req.root, dataset=kind, split=req.split)
        return load_cifar_batches(path, split=req.split, name=kind, preprocess=req.preprocess)
    if kind == "cifar10":
        layout = f"{folder}/ or cifar10/cifar10_test.npz (test) / cifar10/cifar10_train_jpeg.npz (train)"
        file = "cifar10_test.npz" if req.split == "test" else "cifar10_train_jpeg.npz"
        extra = [req.root / "cifar10" / file] if req.root is not None else []
    else:
        layout = f"{folder}/ (for the 20-image lossless sample use 'cifar100_sample')"
        extra = []
    candidates = _cifar_batches_candidates(req.root, folder, subdir)[:2] + extra if req.root is not None else []
    raise _missing(kind, req, layout, candidates, download=True)


def _load_npz_file(name: str, files: Mapping[str, str]) -> Callable[[_Request], ImageDataset]:
    def load(req: _Request) -> ImageDataset:
        rel = files[req.split]
        candidates = [req.root / rel] if req.root is not None else []
        if not candidates or not candidates[0].is_file():
            raise _missing(name, req, rel, candidates)
        return load_cifar_npz(candidates[0], name=name, split=req.split, preprocess=req.preprocess)

    return load


def _load_imagenet_sample(req: _Request) -> ImageDataset:
    path = req.root / "imagenet_sample" if req.root is not None else None
    if path is None or not (path / "labels.csv").is_file():
        raise _missing("imagenet_sample", req, "imagenet_sample/labels.csv", [path] if path else [])
    dataset = load_labels_csv_folder(path, num_classes=1000, name="imagenet_sample", preprocess=req.preprocess)
    dataset.info.setdefault("notes", []).append(
        "one image per ILSVRC-2012 class, stored 256x256 (shorter side 256, centre crop); a sample, not a benchmark"
    )
    return dataset


def _load_cifar_c_named(kind: str) -> Callable[[_Request], ImageDataset]:
    folder = "CIFAR-10-C" if kind == "cifar10c" else "CIFAR-100-C"
    names = CIFAR10_CLASSES if kind == "cifar10c" else CIFAR100_CLASSES

    def load(req: _Request) -> ImageDataset:
        path = req.root / folder if req.root is not None else None
        if path is None or not path.is_dir():
            raise _missing(kind, req, f"{folder}/<corruption>.npy and {folder}/labels.npy", [path] if path else [])
        return _with_corruption(
            req,
            path,
            list_cifar_c_corruptions(path),
            lambda c, s: load_cifar_c(path, c, s, name=kind, class_names=list(names), preprocess=req.preprocess),
        )

    return load


_NAMED: dict[str, _Named] = {
    "digits": _Named(
        "scikit-learn's 8x8 digits as 32x32 RGB, embedded (offline default)",
        ("test", "train"),
        lambda req: load_digits(req.split, preprocess=req.preprocess),
    ),
    "cifar10": _Named(
        "CIFAR-10: cifar-10-batches-py/ (exact) or cifar10/cifar10_test.npz, cifar10_train_jpeg.npz (JPEG-q75)",
        ("test", "train"),
        lambda req: _load_cifar(req, "cifar10"),
        downloadable=True,
    ),
    "cifar10_exact": _Named(
        "CIFAR-10 bit-exact subsets: 932 test images (indices 0..931), 4,660 train images",
        ("test", "train"),
        _load_npz_file(
            "cifar10_exact",
            {
                "test": "cifar10/cifar10_test_exact_first932.npz",
                "train": "cifar10/cifar10_train_exact_subset.npz",
            },
        ),
    ),
    "cifar100": _Named(
        "CIFAR-100 (fine labels): cifar-100-python/",
        ("test", "train"),
        lambda req: _load_cifar(req, "cifar100"),
        downloadable=True,
    ),
    "cifar100_sample": _Named(
        "CIFAR-100 test indices 0..19, lossless: cifar100/cifar100_test_first20.npz",
        ("test",),
        _load_npz_file("cifar100_sample", {"test": "cifar100/cifar100_test_first20.npz"}),
    ),
    "imagenet_sample": _Named(
        "1,000 ImageNet images, one per class: imagenet_sample/labels.csv + images/",
        ("test",),
        _load_imagenet_sample,
    ),
    "cifar10c": _Named(
        "CIFAR-10-C: CIFAR-10-C/<corruption>.npy (needs corruption and severity)",
        ("test",),
        _load_cifar_c_named("cifar10c"),
        corrupted=True,
    ),
    "cifar100c": _Named(
        "CIFAR-100-C: CIFAR-100-C/<corruption>.npy (needs corruption and severity)",
        ("test",),
        _load_cifar_c_named("cifar100c"),
        corrupted=True,
    ),
}


def list_datasets() -> list[str]:
    """The names :func:`load_dataset` knows, sorted (any existing path works as well)."""
    return sorted(_NAMED)


def describe_datasets() -> dict[str, str]:
    """Name -> one-line description (layout under the data folder) of every known dataset."""
    return {name: _NAMED[name].description for name in list_datasets()}


# ------------------------------------------------------------------------------------------ paths
def _with_corruption(
    req: _Request, where: Path, available: list[str], load: Callable[[str, int], ImageDataset]
) -> ImageDataset:
    if req.corruption is None or req.severity is None:
        raise ValueError(
            f"{where} holds pre-corrupted images: pass corruption= and severity= (1..5). "
            f"Corruptions here: {', '.join(available) or 'none found'}"
        )
    return load(req.corruption, req.severity)


def _has_class_dirs_below(path: Path) -> bool:
    return path.is_dir() and any(child.is_dir() for child in path.iterdir())


def _imagenet_c_corruption_dir(path: Path) -> bool:
    """``path`` looks like ``<tree>/<corruption>``: severity folders that hold class folders."""
    return any(_has_class_dirs_below(path / str(s)) for s in range(1, 6))


def _no_corruption(req: _Request, what: str) -> None:
    if req.corruption is not None or req.severity is not None:
        raise ValueError(
            "corruption / severity select stored corrupted images (cifar10c, cifar100c, an ImageNet-C tree "
            f"or CIFAR-C folder), but {what} has none; to corrupt images on the fly use robustlab.perturb"
        )


def _load_path(path: Path, req: _Request) -> ImageDataset:
    layouts = (
        "a .npz file (images/labels or jpeg_bytes/offsets/labels), cifar-10-batches-py/ or cifar-100-python/ "
        "(or their parent), a CIFAR-C folder with labels.npy, an ImageNet-C tree "
        "<corruption>/<severity>/<wnid>/*, a folder with labels.csv, or a class-per-folder tree <class>/*"
    )
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; expected {layouts}")
    if path.is_file():
        if path.suffix == ".npy" and (path.parent / "labels.npy").is_file() and path.stem != "labels":
            if req.corruption is not None and req.corruption != path.stem:
                raise ValueError(f"{path} holds corruption {path.stem!r}, but corruption={req.corruption!r}")
            req = replace(req, corruption=path.stem)
            return _with_corruption(
                req,
                path,
                [path.stem],
                lambda c, s: load_cifar_c(path.parent, c, s, preprocess=req.preprocess),
            )
        _no_corruption(req, str(path))
        if path.suffix == ".npz":
            return load_cifar_npz(path, split=req.split, preprocess=req.preprocess)
        if path.name == "labels.csv":
            return load_labels_csv_folder(path.parent, split=req.split, preprocess=req.preprocess)
        raise ValueError(f"{path}: unrecognised file; expected {layouts}")
    kind = detect_cifar_batches(path)
    if kind is None:
        for folder in (CIFAR10_BATCHES, CIFAR100_BATCHES):
            if (path / folder).is_dir():
                kind, path = detect_cifar_batches(path / folder), path / folder
                break
    if kind is not None:
        _no_corruption(req, str(path))
        return load_cifar_batches(path, split=req.split, preprocess=req.preprocess)
    if (path / "labels.npy").is_file():
        return _with_corruption(
            req,
            path,
            list_cifar_c_corruptions(path),
            lambda c, s: load_cifar_c(path, c, s, preprocess=req.preprocess),
        )
    if (path / "labels.csv").is_file():
        _no_corruption(req, str(path))
        return load_labels_csv_folder(path, split=req.split, preprocess=req.preprocess)
    corruptions = list_imagenet_c_corruptions(path)
    if corruptions and all(_imagenet_c_corruption_dir(path / c) for c in corruptions):
        return _with_corruption(
            req, path, corruptions, lambda c, s: load_imagenet_c(path, c, s, preprocess=req.preprocess)
        )
    if _imagenet_c_corruption_dir(path):  # <tree>/<corruption>
        req = _Request(req.root, req.split, req.preprocess, req.download, req.corruption or path.name, req.severity)
        if req.corruption != path.name:
            raise ValueError(f"{path} holds corruption {path.name!r}, but corruption={req.corruption!r}")
        return _with_corruption(
            req, path, [path.name], lambda c, s: load_imagenet_c(path.parent, c, s, preprocess=req.preprocess)
        )
    if path.name.isdigit() and _imagenet_c_corruption_dir(path.parent):  # <tree>/<corruption>/<severity>
        severity = check_severity(int(path.name))
        if req.severity not in (None, severity) or req.corruption not in (None, path.parent.name):
            raise ValueError(
                f"{path} holds {path.parent.name} at severity {severity}, but corruption={req.corruption!r}, "
                f"severity={req.severity!r}"
            )
        return load_imagenet_c(path.parent.parent, path.parent.name, severity, preprocess=req.preprocess)
    _no_corruption(req, str(path))
    if _has_class_dirs_below(path):
        return load_image_folder(path, split=req.split, preprocess=req.preprocess)
    raise ValueError(f"{path}: unrecognised dataset folder; expected {layouts}")


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.startswith((".", "~")) or Path(text).suffix != ""


# ------------------------------------------------------------------------------------------ front door
def load_dataset(
    name_or_path: str | os.PathLike[str],
    *,
    split: str = "test",
    data_dir: str | os.PathLike[str] | None = None,
    preprocess: Preprocess | Mapping[str, Any] | None = None,
    download: bool = False,
    corruption: str | None = None,
    severity: int | None = None,
) -> ImageDataset:
    """Load a dataset by name or path.

    Names (see :func:`list_datasets`) resolve under ``data_dir`` or ``$ROBUSTLAB_DATA``:

    * ``"digits"``: embedded scikit-learn digits, no data folder needed;
    * ``"cifar10"``: ``cifar-10-batches-py/`` (exact pixels) if present, else ``cifar10/cifar10_test.npz``
      (test, JPEG-q75 pixels) or ``cifar10/cifar10_train_jpeg.npz`` (train, decoded at load);
      ``download=True`` fetches the batches with torchvision;
    * ``"cifar10_exact"``: the 932 bit-exact test images (train: the 4,660-image exact subset);
    * ``"cifar100"``: ``cifar-100-python/`` (fine labels); ``"cifar100_sample"``: 20 lossless test images;
    * ``"imagenet_sample"``: ``imagenet_sample/`` with ``labels.csv``, 1,000 classes;
    * ``"cifar10c"`` / ``"cifar100c"``: ``CIFAR-10-C/`` / ``CIFAR-100-C/``, with ``corruption`` and
      ``severity``.

    A path is read by its layout: ``.npz`` file, python batches (or their parent), CIFAR-C folder (or one of
    its ``.npy`` files), ImageNet-C tree (or its corruption / severity folder), ``labels.csv`` folder,
    class-per-folder tree. A known name wins over a same-named folder in the working directory; write
    ``./name`` for the folder.

    Args:
        name_or_path: a known name or a path.
        split: ``"test"`` or ``"train"`` (datasets with one split accept only ``"test"``).
        data_dir: data folder for names (default ``$ROBUSTLAB_DATA``).
        preprocess: resize / crop (a :class:`Preprocess`, or a timm-style data config such as
            ``model.data_config``); recorded in ``info["preprocess"]``; never applied to pre-cropped images.
        download: fetch CIFAR-10 / CIFAR-100 with torchvision into the data folder when missing.
        corruption: corruption of a pre-corrupted dataset (CIFAR-C, ImageNet-C).
        severity: its severity, 1..5.

    Returns:
        An :class:`ImageDataset` with ``name``, ``split``, ``class_names`` and ``info`` (source, format,
        preprocess, notes).

    Shape:
        batches of images ``(N, 3, H, W)`` float in [0, 1], labels ``(N,)`` int64.

    Raises:
        ValueError: unknown name (close matches listed), bad split / severity / corruption, arguments that do
            not apply to the dataset, or a malformed file (the message names it).
        FileNotFoundError: a missing path or data folder; the message names the expected layout and how to
            point robustlab at it.

    Example:
        >>> ds = load_dataset("digits")
        >>> len(ds), ds.class_names[:3]
        (360, ['0', '1', '2'])
    """
    if not isinstance(split, str) or split not in ("test", "train"):
        raise ValueError(f"split must be 'test' or 'train', got {split!r}")
    if severity is not None:
        severity = check_severity(severity)
    if corruption is not None and not isinstance(corruption, str):
        raise ValueError(f"corruption must be a string such as 'gaussian_noise', got {corruption!r}")
    if isinstance(preprocess, Mapping):
        preprocess = Preprocess.from_config(preprocess)
    elif preprocess is not None and not isinstance(preprocess, Preprocess):
        raise ValueError(
            f"preprocess must be a Preprocess, a data config dict or None, got {type(preprocess).__name__}"
        )
    root_text = data_dir if data_dir is not None else os.environ.get(DATA_ENV) or None
    root = Path(root_text).expanduser() if root_text is not None else None
    req = _Request(root, split, preprocess, bool(download), corruption, severity)

    if isinstance(name_or_path, str) and name_or_path in _NAMED:
        entry = _NAMED[name_or_path]
        if split not in entry.splits:
            raise ValueError(f"{name_or_path} has only the {', '.join(entry.splits)} split, got {split!r}")
        if download and not entry.downloadable:
            raise ValueError(f"download=True applies to cifar10 and cifar100 only, not {name_or_path}")
        if not entry.corrupted:
            _no_corruption(req, name_or_path)
        return entry.load(req)
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ValueError(f"name_or_path must be a dataset name or a path, got {type(name_or_path).__name__}")
    text = os.fspath(name_or_path)
    if isinstance(name_or_path, str) and not _looks_like_path(text) and not Path(text).exists():
        raise ValueError(close_matches_message("dataset", text, list_datasets()) + " Or pass an existing path.")
    if download:
        raise ValueError("download=True applies to the names 'cifar10' and 'cifar100', not to paths")
    return _load_path(Path(text).expanduser(), req)
