"""Helpers shared by the explainers: which classes to explain, and how a raw map becomes an ``(N, 1, H, W)`` map."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab.models.classifier import Classifier


def check_classifier(model: object, what: str) -> Classifier:
    if not isinstance(model, Classifier):
        raise ValueError(f"{what} needs a robustlab Classifier (from create_model), got {type(model).__name__}")
    return model


def check_labels_for(labels: object, n: int, num_classes: int, k: int | None) -> Tensor | None:
    """Validate explicit target classes: ``(N,)`` or ``(N, k)`` int64 in ``[0, num_classes)``.

    Returns:
        ``None`` when ``labels`` is ``None``, otherwise labels shaped ``(N, k)``.
    """
    if labels is None:
        return None
    if not isinstance(labels, Tensor):
        raise ValueError(f"labels must be a torch.Tensor of shape (N,) or (N, k), got {type(labels).__name__}")
    if labels.ndim not in (1, 2) or labels.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},) or ({n}, k) for {n} images, got {tuple(labels.shape)}")
    if labels.dtype != torch.int64:
        raise ValueError(f"labels must have dtype torch.int64, got {labels.dtype} (use labels.long())")
    if labels.ndim == 2 and labels.shape[1] == 0:
        raise ValueError("labels of shape (N, k) need k >= 1")
    if labels.numel():
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"labels must lie in [0, {num_classes}), got range [{lo}, {hi}]")
    labels = labels.reshape(n, -1)
    if k is not None and k != labels.shape[1]:
        raise ValueError(f"k={k} disagrees with the {labels.shape[1]} classes per image given in labels; pass one")
    return labels


def check_label_per_image(labels: object, n: int, num_classes: int) -> Tensor | None:
    """Validate one explicit target class per image, ``(N,)`` int64; returns ``(N, 1)`` or ``None``."""
    if isinstance(labels, Tensor) and labels.ndim != 1:
        raise ValueError(
            f"labels must have shape ({n},): one class per image for this explainer, got {tuple(labels.shape)}"
        )
    return check_labels_for(labels, n, num_classes, None)


def check_k(k: int | None, num_classes: int) -> int:
    if k is None:
        return 1
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_classes:
        raise ValueError(f"k must be an integer in 1..{num_classes} (the model's class count), got {k!r}")
    return k


def select_classes(logits: Tensor, labels: Tensor | None, k: int) -> Tensor:
    """``labels`` as ``(N, k)``, or the top-``k`` predicted classes (highest logit first)."""
    if labels is not None:
        return labels.to(logits.device)
    return logits.detach().topk(k, dim=1).indices


def normalize_maps(maps: Tensor, size: Sequence[int] | None = None) -> Tensor:
    """Turn raw maps into displayable explanation maps: ReLU, bilinear upsampling, per-image min-max to [0, 1].

    Exactly: ``m = relu(maps)``; ``m = interpolate(m, size, mode="bilinear", align_corners=False)`` (skipped when
    the size already matches); ``m = (m - min(m)) / (max(m) - min(m))`` with min and max taken over each
    image's ``H x W`` pixels, so every non-constant map spans exactly [0, 1] however small its raw values
    (randomly initialised heads give ~1e-9). A constant map (e.g. all negative before the ReLU) becomes all
    zeros. Every step is differentiable, so losses on normalised maps train the model.

    Args:
        maps: one map per image.
        size: ``(H, W)`` of the output; default the maps' own size.

    Returns:
        Maps in [0, 1], one channel.

    Shape:
        ``(N, h, w)`` or ``(N, 1, h, w)`` -> ``(N, 1, H, W)``.

    Raises:
        ValueError: other shapes, or a non-floating tensor.
    """
    if not isinstance(maps, Tensor) or not maps.is_floating_point():
        raise ValueError("maps must be a floating point torch.Tensor of shape (N, h, w) or (N, 1, h, w)")
    if maps.ndim == 3:
        maps = maps.unsqueeze(1)
    if maps.ndim != 4 or maps.shape[1] != 1:
        raise ValueError(f"maps must have shape (N, h, w) or (N, 1, h, w), got {tuple(maps.shape)}")
    maps = F.relu(maps)
    if size is not None and tuple(size) != tuple(maps.shape[-2:]):
        maps = F.interpolate(maps, size=tuple(int(s) for s in size), mode="bilinear", align_corners=False)
    flat = maps.flatten(1)
    lo = flat.amin(dim=1).view(-1, 1, 1, 1)
    hi = flat.amax(dim=1).view(-1, 1, 1, 1)
    return min_max(maps, lo, hi)


def min_max(values: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """``(values - lo) / (hi - lo)``, and 0 where ``hi == lo``, with finite gradients everywhere."""
    span = hi - lo
    return (values - lo) / torch.where(span > 0, span, torch.ones_like(span))


def resize_maps(maps: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinearly resize ``(N, h, w)`` maps to ``(N, H, W)`` (values keep their scale)."""
    size = tuple(int(s) for s in size)
    if tuple(maps.shape[-2:]) == size:
        return maps
    return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)
