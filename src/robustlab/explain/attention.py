"""Attention maps of vision transformers: what one query token attends to, per layer and head.

Everything is read through :func:`robustlab.models.vit_probe`, which switches timm's fused attention off for the
call only (and restores it), asks open_clip's ``nn.MultiheadAttention`` for per-head weights, and gives the number
of prefix tokens and the patch grid from the model itself (never a hard-coded 14x14).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from robustlab.explain._common import check_classifier
from robustlab.models.classifier import Classifier
from robustlab.models.probes import ViTProbe, vit_probe

QUERIES = ("cls", "center")


def has_class_token(model: Classifier, probe: ViTProbe) -> bool:
    """True when token 0 is a class token (timm puts it before register tokens; open_clip always has one)."""
    net = model.net
    if hasattr(net, "cls_token"):
        return net.cls_token is not None and probe.num_prefix_tokens >= 1
    return probe.num_prefix_tokens >= 1


def require_class_token(model: Classifier, probe: ViTProbe, what: str) -> None:
    if not has_class_token(model, probe):
        raise ValueError(
            f"{what} reads the class token's row, but {model.name or type(model.net).__name__} has no class token "
            f"({probe.num_prefix_tokens} prefix tokens); use attention_maps with an integer patch query"
        )


def query_token(query: str | int, model: Classifier, probe: ViTProbe) -> int:
    """The token index of a query: ``"cls"``, ``"center"`` (the middle patch) or a row-major patch index."""
    h, w = probe.grid
    if isinstance(query, str):
        if query == "cls":
            require_class_token(model, probe, 'query="cls"')
            return 0
        if query == "center":
            return probe.num_prefix_tokens + (h // 2) * w + w // 2
        raise ValueError(f"query must be one of {QUERIES} or a patch index in 0..{h * w - 1}, got {query!r}")
    if isinstance(query, bool) or not isinstance(query, int) or not 0 <= query < h * w:
        raise ValueError(
            f"query must be one of {QUERIES} or a patch index in 0..{h * w - 1} (row-major over the {h}x{w} "
            f"patch grid), got {query!r}"
        )
    return probe.num_prefix_tokens + query


def layer_indices(layers: Sequence[int] | None, num_blocks: int) -> list[int]:
    """Block indices in the given order (negative counts from the end); ``None`` means all blocks."""
    if layers is None:
        return list(range(num_blocks))
    if isinstance(layers, int):
        layers = [layers]
    chosen = list(layers)
    bad = [i for i in chosen if isinstance(i, bool) or not isinstance(i, int) or not -num_blocks <= i < num_blocks]
    if bad or not chosen:
        raise ValueError(f"layers must be block indices in -{num_blocks}..{num_blocks - 1}, got {layers!r}")
    return [i % num_blocks for i in chosen]


def attention_maps(
    model: Classifier,
    images: Tensor,
    *,
    query: str | int = "cls",
    layers: Sequence[int] | None = None,
    differentiable: bool = False,
) -> Tensor:
    """Attention of one query token over the patch tokens, per layer and head, as maps on the patch grid.

    Reads the attention probabilities (softmax over keys, before attention dropout) of each chosen block, takes
    the query's row and drops the prefix-token columns (class / register tokens), so a map does not sum to 1
    when the query also attends to prefix tokens. Works on timm ViTs (fused attention or not) and open_clip
    ViT image towers; the model's mode is left as it is.

    Args:
        model: a ViT classifier.
        images: pixels in [0, 1], at the model's input size.
        query: ``"cls"`` (the class token), ``"center"`` (the patch at ``(h // 2, w // 2)``, the query AFAT's
            figures use) or a patch index, row-major over the grid.
        layers: block indices to read (negative counts from the end); default all, in order.
        differentiable: keep the autograd graph; otherwise the maps are computed without one.

    Returns:
        Attention maps.

    Shape:
        images ``(N, C, H, W)`` -> ``(N, L, heads, h, w)``, ``(h, w)`` the patch grid, ``L`` the number of
        chosen layers.

    Raises:
        ValueError: not a readable ViT (CNNs included), images outside the contract or of the wrong size, an
            unknown query or layer index, ``"cls"`` on a model without a class token.
    """
    model = check_classifier(model, "attention_maps")
    with torch.enable_grad() if differentiable else torch.no_grad():
        probe = vit_probe(model, images)
    token = query_token(query, model, probe)
    chosen = layer_indices(layers, probe.num_blocks)
    rows = torch.stack([probe.attentions[i][:, :, token, probe.num_prefix_tokens :] for i in chosen], dim=1)
    return rows.reshape(*rows.shape[:3], *probe.grid)
