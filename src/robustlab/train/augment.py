"""Batched training augmentation: the CIFAR recipe (pad-4 random crop + flip) without a per-image loop.

Random parameters are drawn separately from applying them (as in kornia), so a call can be replayed and tested
against a plain per-image crop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sample_crop_flip_params(
    n: int, *, padding: int = 4, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Draw crop offsets and flip decisions for ``n`` images.

    Args:
        n: number of images.
        padding: pixels of zero padding on each side; offsets lie in ``[0, 2 * padding]``.
        generator: source of randomness (drawn on its device, CPU for None).

    Returns:
        ``(top, left, flip)``: int64 offsets into the padded image and bool flip flags.

    Shape:
        each ``(n,)``.
    """
    device = generator.device if generator is not None else torch.device("cpu")
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
    flip = torch.rand(n, generator=generator, device=device) < 0.5
    return top, left, flip


def apply_crop_flip(images: Tensor, top: Tensor, left: Tensor, flip: Tensor, *, padding: int = 4) -> Tensor:
    """Zero-pad by ``padding``, crop back to the input size at ``(top, left)`` and mirror where ``flip``.

    One gather does every crop and flip at once: a flipped crop reads its columns in reverse order.

    Args:
        images: pixels in [0, 1].
        top: row offsets into the padded images, in ``[0, 2 * padding]``.
        left: column offsets into the padded images, in ``[0, 2 * padding]``.
        flip: mirror left-right where True.
        padding: zero padding on each side.

    Returns:
        Augmented images on the input's device and dtype.

    Shape:
        images ``(N, C, H, W)``; top, left, flip ``(N,)``; output ``(N, C, H, W)``.
    """
    n, _, h, w = images.shape
    device = images.device
    top, left, flip = top.to(device), left.to(device), flip.to(device)
    padded = F.pad(images, (padding, padding, padding, padding))
    rows = top[:, None] + torch.arange(h, device=device)  # (N, H)
    cols = torch.arange(w, device=device)
    cols = torch.where(flip[:, None], (w - 1) - cols, cols) + left[:, None]  # (N, W)
    batch = torch.arange(n, device=device)[:, None, None]
    # advanced indices around a slice put the indexed dims first: (N, H, W, C)
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def random_crop_flip(images: Tensor, *, generator: torch.Generator | None = None, padding: int = 4) -> Tensor:
    """Random crop with zero padding plus random horizontal flip, batched (the standard CIFAR augmentation).

    Usable directly as ``fit(..., augment=random_crop_flip)``.

    Args:
        images: pixels in [0, 1].
        generator: source of randomness; the same generator state gives the same output.
        padding: zero padding on each side before cropping (4 for 32 px images).

    Returns:
        Augmented images, same shape, device and dtype.

    Shape:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``.

    Raises:
        ValueError: images not a floating ``(N, C, H, W)`` tensor, or negative padding.
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a float tensor of shape (N, C, H, W) in [0, 1], got {got}")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be an integer >= 0, got {padding!r}")
    top, left, flip = sample_crop_flip_params(images.shape[0], padding=padding, generator=generator)
    return apply_crop_flip(images, top, left, flip, padding=padding)
