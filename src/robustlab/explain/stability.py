"""How much a perturbation moves a model's explanation: the per-sample numbers the engine's suites store."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from robustlab.explain.attention import attention_maps
from robustlab.explain.cam import cam, grad_cam
from robustlab.explain.metrics import attention_cosine, map_cosine
from robustlab.models.classifier import Classifier

CAM_METHODS = {"cam": cam, "grad_cam": grad_cam}


def _check_pair(clean: object, perturbed: object) -> None:
    if isinstance(clean, Tensor) and isinstance(perturbed, Tensor) and clean.shape != perturbed.shape:
        raise ValueError(
            f"clean and perturbed images must have the same shape, got {tuple(clean.shape)} and "
            f"{tuple(perturbed.shape)}"
        )


def cam_stability(model: Classifier, clean: Tensor, perturbed: Tensor, *, method: str = "cam") -> Tensor:
    """Cosine similarity between the clean and perturbed raw class maps of the clean top-1 class.

    Both maps explain the class the model predicts on the clean image (so a flipped prediction does not switch
    the class being compared) and are compared raw, at the feature-map resolution, before any ReLU or scaling.

    Args:
        model: a CNN classifier.
        clean: clean pixels in [0, 1].
        perturbed: the perturbed versions, same shape.
        method: ``"cam"`` or ``"grad_cam"``.

    Returns:
        Cosine similarity per image, in [-1, 1].

    Shape:
        ``(N, C, H, W)`` pair -> ``(N,)``.

    Raises:
        ValueError: unknown method, shapes that differ, or whatever :func:`cam` / :func:`grad_cam` refuse.
    """
    if method not in CAM_METHODS:
        raise ValueError(f"method must be one of {sorted(CAM_METHODS)}, got {method!r}")
    _check_pair(clean, perturbed)
    explain = CAM_METHODS[method]
    reference = explain(model, clean)
    moved = explain(model, perturbed, labels=reference.classes)
    with torch.no_grad():
        return map_cosine(reference.raw, moved.raw)


def attention_stability(
    model: Classifier,
    clean: Tensor,
    perturbed: Tensor,
    *,
    query: str | int = "center",
    layers: Sequence[int] | None = None,
) -> Tensor:
    """AFAT's attention stability: per layer and head, cosine of clean vs perturbed attention maps.

    The default query is the centre patch, as in AFAT's Figs. 1, 3 and 4; average the result over
    layers and heads for the paper's per-image Cos-Sim.

    Args:
        model: a ViT classifier.
        clean: clean pixels in [0, 1].
        perturbed: the perturbed versions, same shape.
        query: the query token, see :func:`robustlab.explain.attention_maps`.
        layers: which blocks (default all).

    Returns:
        Cosine similarities.

    Shape:
        ``(N, C, H, W)`` pair -> ``(N, L, heads)``.

    Raises:
        ValueError: shapes that differ, or whatever :func:`attention_maps` refuses.
    """
    _check_pair(clean, perturbed)
    return attention_cosine(
        attention_maps(model, clean, query=query, layers=layers),
        attention_maps(model, perturbed, query=query, layers=layers),
    )
