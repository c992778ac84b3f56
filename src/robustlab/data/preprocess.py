"""Evaluation preprocessing: resize, then centre crop, exactly as timm / torchvision do it on PIL images.

A :class:`Preprocess` is plain data. Readers apply it per image (image folders decode a file, then resize
and crop) and record :meth:`Preprocess.describe` in ``dataset.info["preprocess"]``, so the store says which
pixels a model saw. Normalisation is not part of it: models normalise inside (DESIGN.md, contract 2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

# timm / torchvision interpolation names -> Pillow filters
_PIL_FILTERS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
# the subset that torch.nn.functional.interpolate implements (tensor path for float datasets)
_TENSOR_MODES = ("nearest", "bilinear", "bicubic")
# timm's DEFAULT_CROP_PCT, used when a data config has no crop_pct
DEFAULT_CROP_PCT = 0.875


def _as_size(value: object, field: str) -> int | tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"Preprocess.{field} must be a positive int or an (H, W) pair, got {value!r}")
    if isinstance(value, (int, np.integer)):
        if value < 1:
            raise ValueError(f"Preprocess.{field} must be positive, got {value}")
        return int(value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    ):
        if min(value) < 1:
            raise ValueError(f"Preprocess.{field} must be positive, got {tuple(value)}")
        return (int(value[0]), int(value[1]))
    raise ValueError(f"Preprocess.{field} must be a positive int or an (H, W) pair, got {value!r}")


@dataclass(frozen=True)
class Preprocess:
    """Resize then centre crop, the timm / torchvision evaluation transform without normalisation.

    Args:
        resize: ``int`` resizes the shorter side to this length keeping the aspect ratio (torchvision
            ``Resize(int)``); ``(H, W)`` scales the image, keeping its aspect ratio, until it covers ``H x W``
            (timm ``ResizeKeepRatio``, used for non-square inputs); ``None`` skips resizing.
        crop: centre crop size, ``int`` for a square or ``(H, W)``; an image smaller than the crop is
            zero-padded first, like torchvision ``CenterCrop``. ``None`` skips cropping.
        interpolation: ``"bilinear"``, ``"bicubic"``, ``"nearest"``, ``"lanczos"``, ``"box"`` or
            ``"hamming"`` (Pillow filters; float datasets support the first three).

    Raises:
        ValueError: a non-positive size or an unknown interpolation.

    Example:
        >>> Preprocess.from_config({"input_size": (3, 224, 224), "crop_pct": 0.875})
        Preprocess(resize=256, crop=(224, 224), interpolation='bilinear')
    """

    resize: int | tuple[int, int] | None = None
    crop: int | tuple[int, int] | None = None
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        object.__setattr__(self, "resize", _as_size(self.resize, "resize"))
        crop = _as_size(self.crop, "crop")
        object.__setattr__(self, "crop", (crop, crop) if isinstance(crop, int) else crop)
        if self.interpolation not in _PIL_FILTERS:
            raise ValueError(
                f"Preprocess.interpolation must be one of {', '.join(_PIL_FILTERS)}, got {self.interpolation!r}"
            )

    @classmethod
    def from_config(cls, data_config: Mapping[str, Any]) -> Preprocess:
        """The evaluation preprocessing a model expects, from a timm-style data config.

        ``Classifier.data_config`` provides exactly this dict. The resize length is ``floor(H / crop_pct)``
        like timm's ``transforms_imagenet_eval``; the crop is ``(H, W)`` of ``input_size``.

        Args:
            data_config: mapping with ``input_size`` ``(C, H, W)`` and optionally ``crop_pct`` (default
                0.875), ``interpolation`` (default ``"bilinear"``) and ``crop_mode`` (only ``"center"``).

        Returns:
            The matching :class:`Preprocess`.

        Raises:
            ValueError: missing or malformed ``input_size``, ``crop_pct`` outside ``(0, 1]`` or another crop
                mode.
        """
        if "input_size" not in data_config:
            raise ValueError(
                f"data_config needs 'input_size' (C, H, W), got keys {sorted(data_config)}; pass model.data_config"
            )
        size = tuple(data_config["input_size"])
        if len(size) != 3 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in size):
            raise ValueError(f"data_config['input_size'] must be (C, H, W) positive ints, got {size}")
        height, width = int(size[1]), int(size[2])
        crop_pct = data_config.get("crop_pct") or DEFAULT_CROP_PCT
        if not 0 < float(crop_pct) <= 1:
            raise ValueError(f"data_config['crop_pct'] must lie in (0, 1], got {crop_pct}")
        crop_mode = data_config.get("crop_mode") or "center"
        if crop_mode != "center":
            raise ValueError(
                f"data_config['crop_mode']={crop_mode!r} is not supported; robustlab evaluates with 'center' crops"
            )
        interpolation = data_config.get("interpolation") or "bilinear"
        if height == width:
            resize: int | tuple[int, int] = math.floor(height / crop_pct)
        else:
            resize = (math.floor(height / crop_pct), math.floor(width / crop_pct))
        return cls(resize=resize, crop=(height, width), interpolation=str(interpolation))

    # ------------------------------------------------------------------ geometry
    @property
    def crop_size(self) -> tuple[int, int] | None:
        """The crop as ``(H, W)``, or ``None`` for no crop (an int crop is stored as a square pair)."""
        crop = self.crop
        # never an int after __post_init__; the check narrows the field's declared (input) type
        return (crop, crop) if isinstance(crop, int) else crop

    def resized_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """``(H, W)`` after the resize step for an input of ``size`` ``(H, W)``."""
        h, w = size
        if self.resize is None:
            return h, w
        if isinstance(self.resize, int):
            # torchvision _compute_resized_output_size: the long side is truncated, not rounded
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = self.resize, int(self.resize * long / short)
            return (new_long, new_short) if w <= h else (new_short, new_long)
        # timm ResizeKeepRatio(longest=0): the smaller ratio makes the image cover the target
        ratio = min(h / self.resize[0], w / self.resize[1])
        return round(h / ratio), round(w / ratio)

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """``(H, W)`` of the result for an input of ``size`` ``(H, W)``."""
        crop = self.crop_size
        return crop if crop is not None else self.resized_size(size)

    @staticmethod
    def _crop_box(size: tuple[int, int], crop: tuple[int, int]) -> tuple[int, int, int, int]:
        """torchvision ``CenterCrop`` geometry: ``(pad_top, pad_left, top, left)``: zero pad, then crop."""
        h, w = size
        ch, cw = crop
        pad_top = (ch - h) // 2 if ch > h else 0
        pad_left = (cw - w) // 2 if cw > w else 0
        ph, pw = max(h, ch), max(w, cw)
        top = int(round((ph - ch) / 2.0))
        left = int(round((pw - cw) / 2.0))
        return pad_top, pad_left, top, left

    # ------------------------------------------------------------------ application
    def __call__(self, image: Image.Image) -> Image.Image:
        """Apply to one PIL image (the path image folders use; equal to timm / torchvision on PIL).

        Args:
            image: a PIL image.

        Returns:
            The resized and cropped PIL image.
        """
        h, w = image.height, image.width
        new_h, new_w = self.resized_size((h, w))
        if (new_h, new_w) != (h, w):
            image = image.resize((new_w, new_h), _PIL_FILTERS[self.interpolation])
        crop = self.crop_size
        if crop is None:
            return image
        ch, cw = crop
        pad_top, pad_left, top, left = self._crop_box((new_h, new_w), crop)
        if ch > new_h or cw > new_w:
            canvas = Image.new(image.mode, (max(new_w, cw), max(new_h, ch)))
            canvas.paste(image, (pad_left, pad_top))
            image = canvas
        if (image.height, image.width) == (ch, cw):
            return image
        return image.crop((left, top, left + cw, top + ch))

    def apply_tensor(self, images: Tensor) -> Tensor:
        """Apply to a float batch (the path for in-memory float datasets).

        Resizing uses ``torch.nn.functional.interpolate`` with antialiasing, which follows Pillow closely but
        not bit-exactly; uint8 datasets use the PIL path instead.

        Args:
            images: float pixels in [0, 1].

        Returns:
            The resized and cropped pixels, clamped to [0, 1] (bicubic overshoots).

        Shape:
            ``(N, C, H, W)`` -> ``(N, C, H', W')`` with ``(H', W') = output_size((H, W))``.

        Raises:
            ValueError: an interpolation that ``interpolate`` does not implement.
        """
        h, w = images.shape[-2:]
        new_h, new_w = self.resized_size((h, w))
        if (new_h, new_w) != (h, w):
            if self.interpolation not in _TENSOR_MODES:
                raise ValueError(
                    f"interpolation {self.interpolation!r} is only available for uint8 (PIL) datasets; "
                    f"use one of {', '.join(_TENSOR_MODES)} for float datasets"
                )
            if self.interpolation == "nearest":
                images = F.interpolate(images, size=(new_h, new_w), mode="nearest")
            else:
                images = F.interpolate(
                    images, size=(new_h, new_w), mode=self.interpolation, align_corners=False, antialias=True
                ).clamp_(0.0, 1.0)
        crop = self.crop_size
        if crop is None:
            return images
        ch, cw = crop
        pad_top, pad_left, top, left = self._crop_box((new_h, new_w), crop)
        if ch > new_h or cw > new_w:
            pad_bottom = max(ch - new_h, 0) - pad_top
            pad_right = max(cw - new_w, 0) - pad_left
            images = F.pad(images, (pad_left, pad_right, pad_top, pad_bottom))
        return images[..., top : top + ch, left : left + cw]

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly record of this preprocessing (stored in ``dataset.info["preprocess"]``)."""
        return {
            "resize": self.resize if not isinstance(self.resize, tuple) else list(self.resize),
            "resize_mode": None
            if self.resize is None
            else ("shorter_side" if isinstance(self.resize, int) else "keep_ratio_cover"),
            "crop": list(self.crop_size) if self.crop_size is not None else None,
            "interpolation": self.interpolation,
        }
