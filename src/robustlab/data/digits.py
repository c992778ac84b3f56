"""The embedded offline default: scikit-learn's bundled 8x8 digits as 32x32 RGB images.

It needs no download and no data folder, so ``robustlab demo`` runs on a fresh machine (DESIGN.md, "Data and
weights"). 1,797 images of the digits 0..9, split 80/20 stratified with a fixed seed.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab.data._base import ArrayDataset
from robustlab.data.preprocess import Preprocess

DIGITS_CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))
DIGITS_SIZE = 32
TEST_FRACTION = 0.2
SPLIT_SEED = 0  # fixed: the split is part of the dataset's definition, not a run's randomness
_SPLITS = ("train", "test")


@lru_cache(maxsize=1)
def _digits_pixels() -> tuple[Tensor, Tensor, np.ndarray, np.ndarray]:
    """All digits as float ``(1797, 3, 32, 32)`` plus labels and the train / test row indices."""
    from sklearn.datasets import load_digits  # lazy: scikit-learn import is slow
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    grey = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32) / 16.0).unsqueeze(1)  # values 0..16
    big = F.interpolate(grey, size=(DIGITS_SIZE, DIGITS_SIZE), mode="bilinear", align_corners=False)
    images = big.clamp_(0.0, 1.0).expand(-1, 3, -1, -1).contiguous()
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    rows = np.arange(len(labels))
    train, test = train_test_split(
        rows, test_size=TEST_FRACTION, stratify=bunch.target, random_state=SPLIT_SEED, shuffle=True
    )
    return images, labels, np.sort(train), np.sort(test)


def load_digits(split: str = "test", *, preprocess: Preprocess | None = None) -> ArrayDataset:
    """scikit-learn's digits as RGB images: the embedded default that works offline.

    The 8x8 images (values 0..16) are scaled to [0, 1], upsampled bilinearly to 32x32 and replicated to three
    channels. Train / test is a stratified 80/20 split with a fixed seed, each in original order.

    Args:
        split: ``"train"`` (1,437 images) or ``"test"`` (360 images).
        preprocess: optional resize / crop applied per batch.

    Returns:
        An in-memory :class:`ArrayDataset` named ``"digits"`` with class names ``"0"`` .. ``"9"``.

    Shape:
        images ``(N, 3, 32, 32)`` float in [0, 1], labels ``(N,)`` int64.

    Raises:
        ValueError: an unknown split.
    """
    if split not in _SPLITS:
        raise ValueError(f"digits split must be one of {', '.join(_SPLITS)}, got {split!r}")
    images, labels, train, test = _digits_pixels()
    rows = torch.from_numpy(train if split == "train" else test)
    info = {
        "source": "sklearn.datasets.load_digits",
        "format": "embedded",
        "notes": [
            f"8x8 grey digits (0..16) scaled to [0, 1], bilinear upsampling to {DIGITS_SIZE}x{DIGITS_SIZE}, "
            "replicated to RGB",
            f"stratified {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} split, seed {SPLIT_SEED}",
        ],
    }
    return ArrayDataset(
        images[rows],
        labels[rows],
        class_names=DIGITS_CLASSES,
        name="digits",
        split=split,
        info=info,
        preprocess=preprocess,
    )
