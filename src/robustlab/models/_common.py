"""Shared facts and helpers of the model zoo: normalisation constants, class names, the weights folder."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

# torchvision / timm IMAGENET_DEFAULT_MEAN / _STD; akamaster's CIFAR ResNets were trained with these too.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# CIFAR-10 training-set statistics as used by alpha-beta-CROWN's cifar10_resnet models.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)
# CIFAR-10 label order of the official batches (index -> name).
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

DATA_ENV = "ROBUSTLAB_DATA"


def resolve_class_names(
    class_names: Sequence[str] | None,
    num_classes: int | None,
    *,
    default: Sequence[str],
    spec: str,
) -> list[str]:
    """Reconcile ``class_names`` and ``num_classes`` with a model's default label set.

    Args:
        class_names: names given by the caller, one per output.
        num_classes: output count given by the caller.
        default: the label set the model comes with (used when neither argument overrides it).
        spec: model spec, for error messages.

    Returns:
        One name per output: ``class_names`` if given, ``default`` if ``num_classes`` is absent or equals its
        length, else ``class_0 .. class_{K-1}``.

    Raises:
        ValueError: ``num_classes`` not a positive integer, empty ``class_names``, or the two disagree.
    """
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise ValueError(f"{spec}: num_classes must be a positive integer, got {num_classes!r}")
    if class_names is not None:
        if isinstance(class_names, str):
            raise ValueError(f"{spec}: class_names must be a sequence of names, got the string {class_names!r}")
        names = [str(n) for n in class_names]
        if not names:
            raise ValueError(f"{spec}: class_names must not be empty")
        if num_classes is not None and num_classes != len(names):
            raise ValueError(
                f"{spec}: num_classes={num_classes} but {len(names)} class_names were given; "
                "pass one or make them agree"
            )
        return names
    if num_classes is None or num_classes == len(default):
        return list(default)
    return [f"class_{i}" for i in range(num_classes)]


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ILSVRC-2012 class names in standard index order (first synonym of each WordNet description).

    Returns:
        1000 short names, e.g. ``"tench"``, ``"goldfish"``. Two names repeat ("crane", "maillot"), as in
        ImageNet.
    """
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return tuple(info.index_to_description(i).split(",")[0].strip() for i in range(info.num_classes()))


def data_root(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """The shared data folder: ``data_dir`` if given, else ``$ROBUSTLAB_DATA``, else ``None``."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else None


def find_weights(
    data_dir: str | os.PathLike[str] | None,
    subdir: str,
    pattern: str,
    *,
    spec: str,
) -> Path:
    """Find one weights file ``<data root>/weights/<subdir>/<pattern>``.

    Args:
        data_dir: explicit data folder, else ``$ROBUSTLAB_DATA`` is used.
        subdir: folder under ``weights/``.
        pattern: glob pattern of the file name (e.g. ``resnet20-*.th``).
        spec: model spec, for the error message.

    Returns:
        The first matching file in sorted order.

    Raises:
        FileNotFoundError: no data folder configured or no matching file; the message says where it looked and
            how to fix it.
    """
    root = data_root(data_dir)
    fixes = (
        f"set {DATA_ENV} (or pass data_dir=) to the shared data folder that holds weights/{subdir}/, "
        f"pass weights=<path to a checkpoint>, or use pretrained=False for random weights"
    )
    if root is None:
        raise FileNotFoundError(f"{spec}: no pretrained weights, because no data folder is configured. Fix: {fixes}.")
    folder = root / "weights" / subdir
    matches = sorted(folder.glob(pattern))
    if not matches:
        raise FileNotFoundError(f"{spec}: no pretrained weights matching {folder / pattern}. Fix: {fixes}.")
    return matches[0]
