"""Frost: one of the original frost photographs, randomly cropped, blended over the image.

Source of the recipes: hendrycks/robustness, ``ImageNet-C/create_c/make_imagenet_c.py`` (224 px),
``make_cifar_c.py`` (32 px) and ``make_tinyimagenet_c.py`` (64 px). Where ``imagecorruptions`` 1.1.2 departs from
them, the original is followed and the difference is noted in the function's docstring.
"""

from __future__ import annotations

import functools
import importlib.resources
import math

import numpy as np
import torch
from torch import Tensor

from robustlab import rng
from robustlab.perturb._common import setup_corruption, work_dtype
from robustlab.perturb._cv import resize_linear
from robustlab.perturb._registry import PERTURBATIONS
from robustlab.rng import Generators

__all__ = ["apply_frost", "frost", "frost_overlays"]


_FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
# The original draws np.random.randint(5): only the first five textures are ever used.
_FROST_CHOICES = 5
# Texture scale per profile: the ImageNet code crops the textures as they are; make_cifar_c.py and
# make_tinyimagenet_c.py first shrink them with cv2.resize(fx=fy=0.2 / 0.3, INTER_LINEAR).
_FROST_SCALE = {"imagenet": 1.0, "cifar": 0.2, "tiny": 0.3}


@functools.lru_cache(maxsize=1)
def _frost_textures_uint8() -> tuple[Tensor, ...]:
    """The six frost textures as uint8 RGB (3, H, W) CPU tensors (alpha dropped, as cv2.imread does)."""
    from PIL import Image

    folder = importlib.resources.files("robustlab") / "assets" / "frost"
    out = []
    for name in _FROST_FILES:
        with (folder / name).open("rb") as f, Image.open(f) as im:
            out.append(torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).contiguous())
    return tuple(out)


@functools.lru_cache(maxsize=16)
def _frost_bank(profile: str, height: int, width: int, device: str) -> tuple[Tensor, Tensor]:
    """Textures for one profile and image size, padded into one (T, 3, Hmax, Wmax) float tensor, and their sizes."""
    scale = _FROST_SCALE[profile]
    textures = []
    for tex in _frost_textures_uint8()[:_FROST_CHOICES]:
        th, tw = tex.shape[-2:]
        if scale != 1.0:
            nh, nw = round(th * scale), round(tw * scale)
            tex = resize_linear(tex, nh, nw, 1.0 / scale, 1.0 / scale)
            th, tw = nh, nw
        # images larger than the texture (only at sizes the benchmarks never used): enlarge it until a crop fits,
        # with at least one pixel of play so the random offset exists
        grow = max(1.0, (height + 1) / th, (width + 1) / tw)
        if grow > 1.0:
            nh, nw = math.ceil(th * grow), math.ceil(tw * grow)
            tex = resize_linear(tex, nh, nw, th / nh, tw / nw)
            th, tw = nh, nw
        textures.append(tex)
    hmax = max(t.shape[1] for t in textures)
    wmax = max(t.shape[2] for t in textures)
    # channels last, so that one flat pixel index per output pixel gathers all three channels
    bank = torch.zeros(len(textures), hmax, wmax, 3, dtype=torch.float32)
    for i, t in enumerate(textures):
        bank[i, : t.shape[1], : t.shape[2]] = t.permute(1, 2, 0).float() / 255
    sizes = torch.tensor([[t.shape[1], t.shape[2]] for t in textures])
    return bank.view(-1, 3).to(device), sizes


def frost_overlays(
    n: int,
    height: int,
    width: int,
    *,
    profile: str = "imagenet",
    generator: Generators = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Random crops of the frost textures: per sample a texture (one of the first five) and a crop offset.

    Each sample draws ``randint(5)``, then the row and column offsets ``randint(0, texture_side - image_side)``,
    from its own generator; the crops are then gathered in one indexing operation.

    Args:
        n: number of overlays.
        height: overlay height (the image height).
        width: overlay width.
        profile: texture scale of that benchmark: ``imagenet`` (as shipped), ``cifar`` (× 0.2), ``tiny`` (× 0.3).
        generator: one generator, or one per sample.
        device: device of the result.

    Returns:
        RGB frost overlays in [0, 1], float32.

    Shape:
        ``(n, 3, height, width)``.

    Raises:
        ValueError: unknown profile or a generator list of the wrong length.
    """
    if profile not in _FROST_SCALE:
        raise ValueError(f"unknown frost profile {profile!r}; expected one of {sorted(_FROST_SCALE)}")
    return _frost_crops(n, height, width, profile, generator, device).permute(0, 3, 1, 2).contiguous()


def _frost_crops(
    n: int, height: int, width: int, profile: str, generator: Generators, device: torch.device | str | None
) -> Tensor:
    """Frost crops in channels-last layout ``(n, H, W, 3)``: the random draws, then one gather."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    bank, sizes = _frost_bank(profile, height, width, str(dev))
    hmax, wmax = int(sizes[:, 0].max()), int(sizes[:, 1].max())
    starts = []
    for g in rng.generator_list(generator, n):
        t = int(torch.randint(_FROST_CHOICES, (1,), generator=g))
        top = int(torch.randint(0, int(sizes[t, 0]) - height, (1,), generator=g))
        left = int(torch.randint(0, int(sizes[t, 1]) - width, (1,), generator=g))
        starts.append((t * hmax + top) * wmax + left)
    window = torch.arange(height, device=dev).view(height, 1) * wmax + torch.arange(width, device=dev)
    index = torch.tensor(starts, device=dev).view(n, 1, 1) + window
    return bank.index_select(0, index.view(-1)).view(n, height, width, 3)


def apply_frost(images: Tensor, overlays: Tensor, image_weight: float, frost_weight: float) -> Tensor:
    """Blend frost overlays into the images: ``clip(image_weight * x + frost_weight * overlay, 0, 1)``.

    Args:
        images: clean pixels.
        overlays: frost crops in [0, 1] (see :func:`frost_overlays`).
        image_weight: weight of the image (first severity parameter).
        frost_weight: weight of the frost (second severity parameter).

    Returns:
        Frosted pixels, same shape, dtype and device.

    Shape:
        ``(N, 3, H, W)``, overlays ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: overlays of another shape.
    """
    if overlays.shape != images.shape:
        raise ValueError(f"frost overlays of shape {tuple(overlays.shape)} do not match images {tuple(images.shape)}")
    dtype = work_dtype(images)
    out = torch.mul(images.to(dtype), image_weight)
    out.add_(overlays.to(device=images.device, dtype=dtype), alpha=frost_weight)
    return out.clamp_(0.0, 1.0).to(images.dtype)


@PERTURBATIONS.register
def frost(
    images: Tensor,
    severity: int,
    *,
    generator: Generators = None,
    profile: str | None = None,
) -> Tensor:
    """Frost: a random crop of a frost photograph blended over the image.

    Args:
        images: clean pixels.
        severity: 1..5.
        generator: one generator, or one per sample (batch-independent results).
        profile: ``"imagenet"``, ``"cifar"`` or ``"tiny"`` severity table; default chosen from the image size.

    Returns:
        Frosted pixels in [0, 1], same shape, dtype and device.

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: bad images, severity or profile.

    Note:
        Fidelity: as the original, the texture is one of the first five (``randint(5)``; ``frost6.jpg`` is never
        drawn), the crop offset is uniform, and the textures are cropped as shipped for ImageNet and shrunk with
        OpenCV's bilinear resize by 0.2 (CIFAR) or 0.3 (Tiny-ImageNet) first; the original's BGR read is followed
        by a BGR->RGB flip, so the overlay is the texture in RGB. ``imagecorruptions`` instead enlarges every
        texture by 1.1 (bicubic) and uses ImageNet weights at every size. For image sizes where the scaled texture
        is too small to crop (none of the benchmark sizes), the texture is enlarged just enough.
    """
    (image_weight, frost_weight), prof = setup_corruption("frost", images, severity, profile)
    n, _, h, w = images.shape
    # channels-last crops as a permuted view: apply_frost reads them without a layout copy
    overlays = _frost_crops(n, h, w, prof, generator, images.device).permute(0, 3, 1, 2)
    return apply_frost(images, overlays, image_weight, frost_weight)
