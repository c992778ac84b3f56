"""CIFAR-10-C / CIFAR-100-C readers (Hendrycks & Dietterich 2019).

Layout (REFERENCE.md, "Dataset layouts"): one ``<corruption>.npy`` per corruption, uint8
``(50000, 32, 32, 3)`` = severities 1..5 stacked in blocks of 10,000 in test-set order, and ``labels.npy``
``(50000,)``. Files are memory-mapped, so only the block of the requested severity is ever read from disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from robustlab._checks import check_severity
from robustlab._registry import close_matches_message
from robustlab.data._base import ArrayDataset
from robustlab.data.cifar import CIFAR10_CLASSES, CIFAR100_CLASSES
from robustlab.data.preprocess import Preprocess

# The 19 corruptions released with CIFAR-10-C / CIFAR-100-C (15 benchmark + 4 extra), by file stem.
CIFAR_C_CORRUPTIONS: tuple[str, ...] = (
    "brightness", "contrast", "defocus_blur", "elastic_transform", "fog", "frost", "gaussian_blur",
    "gaussian_noise", "glass_blur", "impulse_noise", "jpeg_compression", "motion_blur", "pixelate",
    "saturate", "shot_noise", "snow", "spatter", "speckle_noise", "zoom_blur",
)  # fmt: skip
NUM_SEVERITIES = 5


def list_cifar_c_corruptions(root: str | Path) -> list[str]:
    """Corruptions present in a CIFAR-C directory (the ``.npy`` stems other than ``labels``), sorted.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory; expected a CIFAR-10-C / CIFAR-100-C folder")
    return sorted(p.stem for p in root.glob("*.npy") if p.stem != "labels")


def _open_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path}: not a readable .npy file (truncated or corrupt?): {err}") from None


def load_cifar_c(
    root: str | Path,
    corruption: str,
    severity: int,
    *,
    name: str | None = None,
    class_names: list[str] | None = None,
    preprocess: Preprocess | None = None,
) -> ArrayDataset:
    """One corruption at one severity of a CIFAR-10-C / CIFAR-100-C directory.

    Args:
        root: folder holding ``<corruption>.npy`` files and ``labels.npy``.
        corruption: file stem, e.g. ``"gaussian_noise"``.
        severity: 1..5; selects rows ``(severity - 1) * n .. severity * n - 1`` with ``n = len(labels) // 5``
            (10,000 for the released files).
        name: dataset name (default ``"cifar10c"``, or ``"cifar100c"`` when labels reach beyond 9).
        class_names: class names (default: CIFAR-10 or CIFAR-100 names, from the label range).
        preprocess: optional resize / crop applied per batch.

    Returns:
        An :class:`ArrayDataset` over a memory-mapped view of the block; ``info`` records the corruption and
        severity.

    Shape:
        images ``(n, 3, 32, 32)`` per batch, float in [0, 1]; labels ``(n,)`` int64.

    Raises:
        FileNotFoundError: ``root``, ``labels.npy`` or a known corruption's file is missing.
        ValueError: unknown corruption (with close matches), severity outside 1..5, or files of the wrong
            dtype / shape / length.
    """
    root = Path(root)
    severity = check_severity(severity, low=1, high=NUM_SEVERITIES)
    available = list_cifar_c_corruptions(root)
    labels_path = root / "labels.npy"
    if not labels_path.is_file():
        raise FileNotFoundError(
            f"{labels_path} is missing; a CIFAR-C folder holds <corruption>.npy files and labels.npy"
        )
    if not isinstance(corruption, str) or corruption not in available:
        if isinstance(corruption, str) and corruption in CIFAR_C_CORRUPTIONS:
            raise FileNotFoundError(
                f"{root / (corruption + '.npy')} is missing; this folder has: "
                f"{', '.join(available) or 'no corruption files'}"
            )
        raise ValueError(close_matches_message("CIFAR-C corruption", str(corruption), available))
    path = root / f"{corruption}.npy"
    images = _open_npy(path)
    labels = np.asarray(_open_npy(labels_path))
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{labels_path}: expected a 1-D integer array, got {labels.dtype} {labels.shape}")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{path}: expected uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    if len(images) != len(labels) or len(labels) % NUM_SEVERITIES:
        raise ValueError(
            f"{path}: expected {NUM_SEVERITIES} equal severity blocks matching labels.npy, got {len(images)} "
            f"images and {len(labels)} labels"
        )
    block = len(labels) // NUM_SEVERITIES
    rows = slice((severity - 1) * block, severity * block)
    block_labels = labels[rows].astype(np.int64)
    if class_names is None:
        many = len(labels) and int(labels.max()) >= len(CIFAR10_CLASSES)
        class_names = list(CIFAR100_CLASSES if many else CIFAR10_CLASSES)
        name = name or ("cifar100c" if many else "cifar10c")
    if len(block_labels) and (block_labels.min() < 0 or block_labels.max() >= len(class_names)):
        raise ValueError(f"{labels_path}: labels must lie in [0, {len(class_names)})")
    info: dict[str, Any] = {
        "source": str(path),
        "format": "cifar-c",
        "corruption": corruption,
        "severity": severity,
        "rows": [rows.start, rows.stop],
    }
    # images[rows] stays a memory map: batches read only their own rows
    return ArrayDataset(
        images[rows],
        block_labels,
        class_names=class_names,
        name=name or "cifar_c",
        info=info,
        preprocess=preprocess,
    )
