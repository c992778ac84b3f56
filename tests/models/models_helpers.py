"""Helpers shared by the model tests (a module, not conftest, so tests can import them by name)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

# A CLIP small enough for unit tests (1.6 M parameters, most of them the token embedding); open_clip has no
# tiny built-in architecture. The ``tiny_clip_arch`` fixture registers it once per session under this name.
TINY_CLIP = "robustlab-test-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def rand_images(n: int, size: int | tuple[int, int], *, seed: int = 0) -> Tensor:
    """Uniform [0, 1] images from a local generator."""
    h, w = (size, size) if isinstance(size, int) else size
    return torch.rand((n, 3, h, w), generator=torch.Generator().manual_seed(seed))


def exact_cifar10_test(data_root: Path) -> tuple[Tensor, Tensor]:
    """The 932 bit-exact CIFAR-10 test images as float [0, 1] NCHW and their labels."""
    with np.load(data_root / "cifar10" / "cifar10_test_exact_first932.npz") as z:
        images = torch.from_numpy(z["images"].copy()).permute(0, 3, 1, 2).float() / 255
        labels = torch.from_numpy(z["labels"].copy()).long()
    return images, labels


def no_hooks_left(module: torch.nn.Module) -> bool:
    """True when no forward (pre-)hooks remain anywhere in ``module``."""
    return all(
        not m._forward_hooks and not m._forward_pre_hooks and not m._forward_hooks_with_kwargs for m in module.modules()
    )
