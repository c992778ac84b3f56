"""The Classifier: a network plus the pixel contract (DESIGN.md, contract 2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn


class Classifier(nn.Module):
    """Wraps a network so it takes [0, 1] RGB pixels and normalises them itself.

    Attacks, corruptions and noise act on pixels before this module, so their budgets mean the same thing for
    every model whatever its normalisation (CLIP vs ImageNet statistics, TF-Lite's (x*255-127)/128).

    Args:
        net: the network; takes normalised images, returns logits ``(N, K)``.
        mean: per-channel mean subtracted from the pixels.
        std: per-channel std the pixels are divided by.
        input_size: ``(C, H, W)`` the network expects.
        class_names: one name per output logit.
        name: the spec this model was created from (recorded in the store).
        crop_pct: centre-crop fraction used by evaluation preprocessing (resize to ``H / crop_pct``, crop
            ``H``).
        interpolation: resize interpolation of the evaluation preprocessing.
        family: ``"cnn"``, ``"vit"``, ``"hybrid"`` or ``"clip"``; tells probes what to look for.

    Shape:
        forward: ``(N, C, H, W)`` float in [0, 1] -> ``(N, K)`` logits.
    """

    mean: Tensor
    std: Tensor
    # The buildable spec of the architecture ("cifar:resnet20"); create_model sets it, save_checkpoint records
    # it. It differs from ``name`` for models loaded from "file:" checkpoints.
    arch: str = ""

    def __init__(
        self,
        net: nn.Module,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        input_size: tuple[int, int, int],
        class_names: Sequence[str],
        name: str = "",
        crop_pct: float = 1.0,
        interpolation: str = "bilinear",
        family: str = "cnn",
    ) -> None:
        super().__init__()
        if len(mean) != input_size[0] or len(std) != input_size[0]:
            raise ValueError(f"mean/std need {input_size[0]} entries, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {tuple(std)}")
        self.net = net
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.register_buffer("mean", mean_t, persistent=False)
        self.register_buffer("std", std_t, persistent=False)
        channels, height, width = input_size
        self.input_size = (int(channels), int(height), int(width))
        self.class_names = list(class_names)
        self.name = name
        self.crop_pct = float(crop_pct)
        self.interpolation = interpolation
        self.family = family

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @property
    def data_config(self) -> dict[str, Any]:
        """Preprocessing facts in timm's vocabulary (input_size, crop_pct, interpolation, mean, std)."""
        return {
            "input_size": self.input_size,
            "crop_pct": self.crop_pct,
            "interpolation": self.interpolation,
            "mean": tuple(float(v) for v in self.mean.flatten()),
            "std": tuple(float(v) for v in self.std.flatten()),
        }

    def normalize(self, images: Tensor) -> Tensor:
        """Map [0, 1] pixels to the network's input space."""
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)

    def forward(self, images: Tensor) -> Tensor:
        # Only cheap checks here: a full range check would cost a reduction per forward in attack loops.
        if images.ndim != 4 or images.shape[1] != self.input_size[0]:
            raise ValueError(
                f"{self.name or 'model'} expects images of shape (N, {self.input_size[0]}, H, W), "
                f"got {tuple(images.shape)}"
            )
        if not images.is_floating_point():
            raise ValueError(f"images must be float in [0, 1], got {images.dtype} (use images.float() / 255)")
        return self.net(self.normalize(images))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, input_size={self.input_size}, classes={self.num_classes}, family={self.family!r}"
