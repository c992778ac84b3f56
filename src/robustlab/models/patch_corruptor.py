"""AFAT's patch-corruption model C (eq. 2), its file format, and the ViT patch grid it is built for.

C scores the patches of a ViT's input; AFAT (:mod:`robustlab.methods.afat`) trains it against the classifier, and
the ``afat_patch`` evaluation condition (:mod:`robustlab.engine`) reads a trained one back with
:func:`load_corruptor`. It is a model, so it lives in the model layer; the mask and the patch-filling ops it feeds
are :func:`robustlab.perturb.occlusion.keep_mask` and :func:`robustlab.perturb.occlusion.corrupt_patches`.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.models.classifier import Classifier
from robustlab.models.probes import _vit_parts

__all__ = ["PatchCorruptor", "load_corruptor", "patch_geometry", "save_corruptor"]


def _classifier(model: nn.Module) -> Classifier:
    inner = getattr(model, "module", model)  # DDP wrapper -> the classifier
    if not isinstance(inner, Classifier):
        raise ValueError(f"AFAT needs a robustlab Classifier (from create_model), got {type(inner).__name__}")
    return inner


def patch_geometry(model: nn.Module) -> tuple[int, tuple[int, int]]:
    """The patch size and token grid of a ViT classifier, read from the model.

    Returns:
        ``(patch_size, (h, w))``, e.g. ``(4, (8, 8))`` for ``cifar:vit_tiny_patch4``.

    Raises:
        ValueError: not a Classifier, not a vision transformer, or an input size the grid does not divide.
    """
    clf = _classifier(model)
    try:
        parts = _vit_parts(clf)
    except ValueError as e:
        raise ValueError(f"AFAT trains vision transformers (timm ViTs, cifar:vit_tiny_patch4): {e}") from None
    height, width = clf.input_size[1:]
    grid = parts.grid
    if height % grid[0] or width % grid[1] or height // grid[0] != width // grid[1]:
        raise ValueError(f"{clf.name}: input {height}x{width} is not a grid of {grid} square patches")
    return height // grid[0], grid


class PatchCorruptor(nn.Module):
    """C (eq. 2): conv (kernel = stride = patch, C → 1, no bias) → GELU → linear over the N patch scores (no bias).

    Args:
        patch_size: side of the model's square patches.
        grid: ``(h, w)`` token grid; N = h · w.
        channels: image channels.
        generator: draws the initial weights (PyTorch's default ranges), so C does not touch the global RNG.

    Shape:
        normalised images ``(B, channels, h·p, w·p)`` -> scores ``(B, N)``; higher = keep.
    """

    def __init__(
        self, patch_size: int, grid: tuple[int, int], channels: int = 3, *, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.patch_size, self.grid = int(patch_size), (int(grid[0]), int(grid[1]))
        patches = self.grid[0] * self.grid[1]
        # skip_init: the default initialisation would draw from the global RNG; ours comes from ``generator``
        self.conv = nn.utils.skip_init(nn.Conv2d, channels, 1, kernel_size=patch_size, stride=patch_size, bias=False)
        self.linear = nn.utils.skip_init(nn.Linear, patches, patches, bias=False)
        with torch.no_grad():  # the bounds nn.Conv2d / nn.Linear use by default (kaiming uniform, a = sqrt(5))
            for weight, fan_in in ((self.conv.weight, channels * patch_size**2), (self.linear.weight, patches)):
                bound = 1.0 / math.sqrt(fan_in)
                weight.copy_(torch.rand(weight.shape, generator=generator) * 2 * bound - bound)

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def forward(self, images: Tensor) -> Tensor:
        return self.linear(F.gelu(self.conv(images)).flatten(1))


def save_corruptor(corruptor: PatchCorruptor, path: str | os.PathLike[str]) -> None:
    """Write C's weights and geometry to ``path`` (a torch file readable with ``weights_only=True``)."""
    torch.save({"patch_size": corruptor.patch_size, "grid": list(corruptor.grid),
                "channels": corruptor.conv.in_channels,
                "state_dict": {k: v.detach().cpu() for k, v in corruptor.state_dict().items()}}, path)  # fmt: skip


def load_corruptor(path: str | os.PathLike[str]) -> PatchCorruptor:
    """Read a C written by :func:`save_corruptor`.

    Raises:
        FileNotFoundError: no such file.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"no corruptor at {path} (robustlab train afat writes OUT.corruptor.pt)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    corruptor = PatchCorruptor(state["patch_size"], tuple(state["grid"]), state["channels"])
    corruptor.load_state_dict(state["state_dict"])
    return corruptor
