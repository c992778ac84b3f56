"""Streaming image folders: class-per-folder trees, ImageNet-C trees and ``labels.csv`` folders.

Nothing is loaded up front: a dataset holds file paths and labels, and each batch decodes its files with
Pillow (``.convert("RGB")``) and applies the :class:`~robustlab.data.Preprocess`, if any. Use
``iter_batches(dataset, num_workers=k)`` to decode in worker processes.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from robustlab._checks import check_severity
from robustlab._registry import close_matches_message
from robustlab.data._base import ImageDataset, _to_float_nchw
from robustlab.data.preprocess import Preprocess

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".webp", ".tif", ".tiff",
)  # fmt: skip
LABELS_CSV_COLUMNS: tuple[str, ...] = ("file", "class_index")


def is_image_file(path: Path) -> bool:
    """Whether ``path`` is a visible file with an image extension (case-insensitive)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def _image_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` from the header only."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{path}: not a readable image ({err})") from None


def decode_image(path: str | Path, preprocess: Preprocess | None = None) -> np.ndarray:
    """Decode one image file to uint8 RGB, applying ``preprocess`` if given.

    Args:
        path: image file.
        preprocess: resize / crop applied to the decoded PIL image.

    Returns:
        uint8 pixels.

    Shape:
        ``(H, W, 3)``.

    Raises:
        ValueError: the file is not a decodable image (truncated, corrupt or not an image); names the file.
    """
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{path}: not a decodable image ({err})") from None
    if preprocess is not None:
        rgb = preprocess(rgb)
    return np.asarray(rgb)


class FolderDataset(ImageDataset):
    """A list of image files with labels, decoded per batch (never loaded whole).

    Args:
        files: image paths, in dataset order.
        labels: one class index per file.
        class_names: one name per class.
        name: dataset name recorded in the store.
        split: split recorded in the store.
        info: provenance recorded in the store.
        preprocess: resize / crop applied to each decoded image.
        pre_cropped: the images are already at their evaluation size (ImageNet-C): ``preprocess`` is never
            applied; a preprocess whose output size differs from the images raises instead.
        class_ids: stable class identifiers (wnids), one per class, when they differ from the names.

    Shape:
        items ``(3, H, W)`` float in [0, 1]; batches need equal sizes (mixed-size folders need a preprocess).

    Raises:
        ValueError: files and labels differ in length, a label is out of range, or a pre-cropped dataset gets
            a preprocess with another output size.
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        labels: Sequence[int],
        *,
        class_names: Sequence[str],
        name: str,
        split: str = "test",
        info: dict[str, Any] | None = None,
        preprocess: Preprocess | None = None,
        pre_cropped: bool = False,
        class_ids: Sequence[str] | None = None,
    ) -> None:
        self.files = [Path(f) for f in files]
        self.targets = [int(v) for v in labels]
        if len(self.files) != len(self.targets):
            raise ValueError(f"{name}: {len(self.files)} files but {len(self.targets)} labels")
        self.class_names = list(class_names)
        bad = [v for v in self.targets if not 0 <= v < len(self.class_names)]
        if bad:
            raise ValueError(f"{name}: labels must lie in [0, {len(self.class_names)}), got {bad[:5]}")
        self.class_ids = list(class_ids) if class_ids is not None else None
        if self.class_ids is not None and len(self.class_ids) != len(self.class_names):
            raise ValueError(f"{name}: {len(self.class_ids)} class ids for {len(self.class_names)} classes")
        self.name = name
        self.split = split
        self.pre_cropped = pre_cropped
        self.info = dict(info or {})
        self.info.pop("preprocess_requested", None)
        if pre_cropped and preprocess is not None:
            self._check_pre_cropped(preprocess)
            # the images already are what this preprocess would produce: record it, never apply it
            self.info["preprocess_requested"] = preprocess.describe()
            preprocess = None
        self.preprocess = preprocess
        self.info["preprocess"] = preprocess.describe() if preprocess is not None else None
        self.info["pre_cropped"] = pre_cropped

    def _check_pre_cropped(self, preprocess: Preprocess) -> None:
        if not self.files:
            return
        size = _image_size(self.files[0])
        wanted = preprocess.output_size(size)
        if wanted != size:
            raise ValueError(
                f"{self.name}: images are pre-cropped to {size[0]}x{size[1]} (e.g. {self.files[0]}) and are "
                f"never resized or cropped again, but the preprocess asks for {wanted[0]}x{wanted[1]} "
                f"({preprocess.describe()}). Evaluate a model whose input size is {size[0]}x{size[1]}, or "
                "load without a preprocess and resize the batches yourself if you accept the distortion."
            )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        pixels = decode_image(self.files[index], self.preprocess)
        return _to_float_nchw(pixels[None])[0], self.targets[index]

    def get_batch(self, indices: Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
        idx = [int(i) for i in indices]
        arrays = [decode_image(self.files[i], self.preprocess) for i in idx]
        if arrays and any(a.shape != arrays[0].shape for a in arrays):
            first = self.files[idx[0]]
            odd = next(k for k, a in enumerate(arrays) if a.shape != arrays[0].shape)
            raise ValueError(
                f"{self.name}: images in a batch must have equal sizes, but {first} is "
                f"{arrays[0].shape[0]}x{arrays[0].shape[1]} and {self.files[idx[odd]]} is "
                f"{arrays[odd].shape[0]}x{arrays[odd].shape[1]}; pass a preprocess, e.g. "
                "preprocess=Preprocess(resize=256, crop=224) or Preprocess.from_config(model.data_config)"
            )
        images = _to_float_nchw(np.stack(arrays)) if arrays else torch.empty(0, 3, 0, 0)
        return images, torch.tensor([self.targets[i] for i in idx], dtype=torch.int64)

    def with_preprocess(self, preprocess: Preprocess | None) -> FolderDataset:
        """The same files with ``preprocess`` replacing the current one (pre-cropped ones check, skip)."""
        return FolderDataset(
            self.files,
            self.targets,
            class_names=self.class_names,
            name=self.name,
            split=self.split,
            info=self.info,
            preprocess=preprocess,
            pre_cropped=self.pre_cropped,
            class_ids=self.class_ids,
        )


# ------------------------------------------------------------------------------------------ layouts
def _class_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan_classes(root: Path, classes: Sequence[str]) -> tuple[list[Path], list[int]]:
    files: list[Path] = []
    labels: list[int] = []
    for index, cls in enumerate(classes):
        folder = root / cls
        if not folder.is_dir():
            continue
        found = sorted(p for p in folder.iterdir() if is_image_file(p))
        files.extend(found)
        labels.extend([index] * len(found))
    return files, labels


def load_image_folder(
    root: str | Path,
    *,
    classes: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    name: str | None = None,
    split: str = "test",
    preprocess: Preprocess | None = None,
    pre_cropped: bool = False,
) -> FolderDataset:
    """A class-per-folder tree ``root/<class>/<image>`` (ImageNet val style, ``<class>`` = wnid or name).

    Args:
        root: the tree root.
        classes: folder names in class-index order (default: the sub-folders of ``root``, sorted, which gives
            the standard ILSVRC-2012 index for wnid folders). Pass the full list when some classes may be
            missing, so indices do not shift.
        class_names: display names, one per class (default: the folder names).
        name: dataset name (default: the folder name).
        split: split recorded in the store.
        preprocess: resize / crop applied to each decoded image.
        pre_cropped: see :class:`FolderDataset`.

    Returns:
        A streaming :class:`FolderDataset`; files sorted by class, then by file name.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
        ValueError: no class folders or no images, or ``class_names`` of the wrong length.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory; expected a class-per-folder tree root/<class>/*.jpg")
    classes = list(classes) if classes is not None else _class_dirs(root)
    if not classes:
        raise ValueError(f"{root}: no class folders found; expected root/<class>/<image files>")
    files, labels = _scan_classes(root, classes)
    if not files:
        raise ValueError(f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in its class folders")
    names = list(class_names) if class_names is not None else list(classes)
    if len(names) != len(classes):
        raise ValueError(f"{root}: got {len(names)} class names for {len(classes)} classes")
    info: dict[str, Any] = {"source": str(root), "format": "image-folder"}
    return FolderDataset(
        files,
        labels,
        class_names=names,
        name=name or root.name,
        split=split,
        info=info,
        preprocess=preprocess,
        pre_cropped=pre_cropped,
        class_ids=list(classes),
    )


def load_coop_split(root: str | Path, split_file: str | Path, split: str = "test",
                    preprocess: Preprocess | None = None) -> FolderDataset:  # fmt: skip
    """A CoOp / TPT split file (``split_zhou_<Dataset>.json``) as a streaming dataset of its images under ``root``.

    The file maps ``"train"``, ``"val"`` and ``"test"`` to ``[image path relative to root, label, class name]``
    entries (the format of CoOp's and TPT's data preparation); class names come from the entries, underscores read
    as spaces.

    Args:
        root: the folder the split's paths are relative to.
        split_file: the JSON split file.
        split: ``"train"``, ``"val"`` or ``"test"``.
        preprocess: optional per-image preprocessing.

    Returns:
        A :class:`FolderDataset` named after the file (``split_zhou_Caltech101.json`` -> ``Caltech101``).

    Raises:
        FileNotFoundError: a missing split file, root folder or listed image (the count and one example named).
        ValueError: a malformed file, an unknown split, or labels that do not run 0..K-1.
    """
    import json

    root, split_file = Path(root), Path(split_file)
    if not split_file.is_file():
        raise FileNotFoundError(f"split file {split_file}: no such file (a CoOp split_zhou_<Dataset>.json)")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (the folder the split file's image paths are under)")
    try:
        splits = json.loads(split_file.read_text())
        entries = splits[split]
        files = [root / str(path) for path, _, _ in entries]
        labels = [int(label) for _, label, _ in entries]
        # class names from every split, so that a split which misses a class keeps the full label space
        names = {int(label): str(name).replace("_", " ") for part in splits.values() for _, label, name in part}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"{split_file}: expected {{{split!r}: [[path, label, class name], ...]}} ({e!r})") from None
    if not entries or sorted(names) != list(range(len(names))):
        raise ValueError(f"{split_file}: split {split!r} must list images, and the labels of all splits run 0..K-1")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} images of {split_file} are missing under {root}, e.g. {missing[0]}")
    return FolderDataset(files, labels, class_names=[names[k] for k in range(len(names))],
                         name=split_file.stem.removeprefix("split_zhou_"), split=split, preprocess=preprocess,
                         info={"source": str(root), "split_file": str(split_file)})  # fmt: skip


def _has_severity_dirs(path: Path) -> bool:
    # a few stat calls, never a listing: class folders can hold thousands of files
    return any((path / str(s)).is_dir() for s in range(1, 6))


def list_imagenet_c_corruptions(root: str | Path) -> list[str]:
    """Corruption folders of an ImageNet-C tree (those holding severity folders ``1`` .. ``5``), sorted."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and _has_severity_dirs(p))


def load_imagenet_c(
    root: str | Path,
    corruption: str,
    severity: int,
    *,
    classes: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    name: str = "imagenet_c",
    preprocess: Preprocess | None = None,
) -> FolderDataset:
    """One corruption / severity of an ImageNet-C tree ``root/<corruption>/<severity>/<wnid>/*.JPEG``.

    The images are already centre-cropped to 224 px, so they are never resized or cropped again: a
    ``preprocess`` whose output equals the image size is recorded (``info["preprocess_requested"]``) but not
    applied; any other size raises.

    Args:
        root: the tree root.
        corruption: corruption folder name, e.g. ``"gaussian_noise"``.
        severity: 1..5.
        classes: wnids in class-index order (default: the sorted wnid folders of this severity; pass all
            1000 when some may be missing).
        class_names: display names, one per class (default: the wnids).
        name: dataset name recorded in the store.
        preprocess: the model's preprocessing, checked against the image size.

    Returns:
        A streaming, pre-cropped :class:`FolderDataset`; ``info`` records corruption and severity.

    Raises:
        FileNotFoundError: ``root`` or the severity folder is missing.
        ValueError: unknown corruption (with close matches), bad severity, no images, or a preprocess that
            would resize / crop the pre-cropped images.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root} is not a directory; expected an ImageNet-C tree root/<corruption>/<severity>/<wnid>/*.JPEG"
        )
    severity = check_severity(severity)
    available = list_imagenet_c_corruptions(root)
    if not isinstance(corruption, str) or corruption not in available:
        raise ValueError(close_matches_message("ImageNet-C corruption", str(corruption), available))
    folder = root / corruption / str(severity)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing; {root / corruption} has no severity {severity}")
    dataset = load_image_folder(
        folder, classes=classes, class_names=class_names, name=name, preprocess=preprocess, pre_cropped=True
    )
    dataset.info.update(source=str(folder), format="imagenet-c", corruption=corruption, severity=severity)
    return dataset


def load_labels_csv_folder(
    root: str | Path,
    *,
    num_classes: int | None = None,
    name: str | None = None,
    split: str = "test",
    preprocess: Preprocess | None = None,
) -> FolderDataset:
    """A folder with ``labels.csv`` (columns ``file, class_index`` and optionally ``wnid, class_name``).

    This is the layout of the shared ``imagenet_sample/``: ``images/NNN_<wnid>.jpg`` with one row per image.
    Files are looked up as ``root/<file>``, then ``root/images/<file>``; order follows the csv.

    Args:
        root: the folder holding ``labels.csv``.
        num_classes: number of classes (default ``max(class_index) + 1``); classes without a csv row are named
            ``"class_<i>"``.
        name: dataset name (default: the folder name).
        split: split recorded in the store.
        preprocess: resize / crop applied to each decoded image.

    Returns:
        A streaming :class:`FolderDataset`; ``class_ids`` holds the wnids when the csv has them.

    Raises:
        FileNotFoundError: ``root``, ``labels.csv`` or a listed image is missing.
        ValueError: missing columns, a non-integer or out-of-range class index, or conflicting names for one
            class index.
    """
    root = Path(root)
    csv_path = root / "labels.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path} is missing; expected a folder with labels.csv and its images")
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        missing = [c for c in LABELS_CSV_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {missing}; got {columns}")
        rows = list(reader)
    files: list[Path] = []
    labels: list[int] = []
    names: dict[int, str] = {}
    ids: dict[int, str] = {}
    for line, row in enumerate(rows, start=2):
        try:
            index = int(row["class_index"])
        except (TypeError, ValueError):
            raise ValueError(f"{csv_path}:{line}: class_index must be an integer, got {row['class_index']!r}") from None
        if index < 0:
            raise ValueError(f"{csv_path}:{line}: class_index must be >= 0, got {index}")
        path = root / row["file"]
        if not path.is_file() and (root / "images" / row["file"]).is_file():
            path = root / "images" / row["file"]
        if not path.is_file():
            raise FileNotFoundError(
                f"{csv_path}:{line}: image {row['file']!r} not found in {root} or {root / 'images'}"
            )
        label = row.get("class_name") or row.get("wnid")
        if label:
            if names.setdefault(index, label) != label:
                raise ValueError(f"{csv_path}:{line}: class {index} is named {names[index]!r} and {label!r}")
        if row.get("wnid"):
            ids[index] = row["wnid"]
        files.append(path)
        labels.append(index)
    if not files:
        raise ValueError(f"{csv_path}: no rows")
    total = num_classes if num_classes is not None else max(labels) + 1
    if max(labels) >= total:
        raise ValueError(f"{csv_path}: class_index {max(labels)} does not fit num_classes={total}")
    class_names = [names.get(i, f"class_{i}") for i in range(total)]
    info: dict[str, Any] = {"source": str(root), "format": "labels-csv"}
    return FolderDataset(
        files,
        labels,
        class_names=class_names,
        name=name or root.name,
        split=split,
        info=info,
        preprocess=preprocess,
        class_ids=[ids.get(i, "") for i in range(total)] if ids else None,
    )
