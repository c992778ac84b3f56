"""Attention rollouts: where a vision transformer's class token draws its information from, as a patch-grid map.

Three recipes, each returning the class token's row of a token-to-token matrix over the patch tokens:

- :func:`attention_rollout` (Abnar & Zuidema, 2020): heads fused, identity added for the residual path, rows
  renormalised, multiplied through all layers;
- :func:`gradient_rollout` (Chefer et al., 2021, "generic attention-model explainability"): each layer's
  attention weighted by its gradient, ``I + mean_h (dS/dA * A)^+``, accumulated as ``R <- R + Abar R``;
- :func:`token_gradient_rollout` (A-TPT): attention columns scaled by first-order token importances
  ``[<T, dS/dT>_d]^+`` (l1-normalised), only the last two layers, clipped at a quantile and min-max scaled.

``S`` is the logit of the explained class (``labels``, default the top-1 prediction). Gradients come from
:func:`torch.autograd.grad`; parameter ``.grad`` is never touched and the model's mode is left as it is.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab._checks import check_images
from robustlab.explain._common import check_classifier, check_label_per_image, min_max, resize_maps, select_classes
from robustlab.explain.attention import require_class_token
from robustlab.explain.hooks import ActivationHooks
from robustlab.models.classifier import Classifier
from robustlab.models.probes import ViTProbe, _vit_parts, _ViTParts, vit_probe

HEAD_FUSIONS = ("mean", "max", "min")
TOKEN_ROLLOUT_LAYERS = ("last_two", "all")


def _explicit_attention(
    module: nn.MultiheadAttention, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
) -> tuple[Tensor, Tensor]:
    """Recompute a self-attention ``nn.MultiheadAttention`` call so its probabilities are in the autograd graph.

    ``nn.MultiheadAttention`` returns its weights as a view made after they were used, so a score has no gradient
    with respect to them. This forward hook recomputes the call explicitly (in-projection, scaled dot product,
    softmax, out-projection; no dropout, as in eval mode) and returns ``(output, per-head probabilities)``.
    """
    query = args[0] if args else kwargs["query"]
    mask = kwargs.get("attn_mask", args[3] if len(args) > 3 else None)
    x = query if module.batch_first else query.transpose(0, 1)
    n, t, e = x.shape
    heads = module.num_heads
    q, k, v = F.linear(x, module.in_proj_weight, module.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (z.reshape(n, t, heads, e // heads).transpose(1, 2) for z in (q, k, v))
    scores = q @ k.transpose(-2, -1) / math.sqrt(e // heads)
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    probabilities = scores.softmax(dim=-1)
    out = module.out_proj((probabilities @ v).transpose(1, 2).reshape(n, t, e))
    return (out if module.batch_first else out.transpose(0, 1)), probabilities


@contextlib.contextmanager
def _attention_in_graph(parts: _ViTParts) -> Iterator[None]:
    """While active, every ``nn.MultiheadAttention`` of the tower returns probabilities that carry gradients."""
    handles = [
        attn.register_forward_hook(_explicit_attention, with_kwargs=True)
        for attn in parts.attentions
        if isinstance(attn, nn.MultiheadAttention)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _fuse_heads(attention: Tensor, head_fusion: str) -> Tensor:
    if head_fusion == "mean":
        return attention.mean(dim=1)
    if head_fusion == "max":
        return attention.amax(dim=1)
    return attention.amin(dim=1)


def _check_attentions(attentions: Sequence[Tensor]) -> list[Tensor]:
    attentions = list(attentions)
    if not attentions:
        raise ValueError("rollout needs at least one attention tensor")
    first = attentions[0]
    for a in attentions:
        if not isinstance(a, Tensor) or a.ndim != 4 or a.shape[-1] != a.shape[-2] or a.shape != first.shape:
            shape = tuple(a.shape) if isinstance(a, Tensor) else type(a).__name__
            raise ValueError(
                f"attentions must all have shape (N, heads, T, T) (e.g. ViTProbe.attentions), got {shape} "
                f"next to {tuple(first.shape)}"
            )
    return attentions


def rollout(
    attentions: Sequence[Tensor],
    *,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
) -> Tensor:
    """Attention rollout matrix (Abnar & Zuidema, 2020) over all tokens.

    Per layer ``l`` (in forward order): ``A = fuse_heads(attention_l)``; the ``floor(discard_ratio * T * T)``
    smallest entries of each image's ``A`` are set to 0 (vit-explain's noise filter); ``A = A + I`` for the
    residual connection; rows are divided by their sums. The rollout is the product
    ``R = A_L @ ... @ A_1``. Every row of ``R`` sums to 1, and ``R[:, 0]`` is the class token's attribution to
    all tokens. Without discarding and with mean fusion, ``A + I`` renormalised equals ``(A + I) / 2``.

    Args:
        attentions: per layer, attention probabilities (rows sum to 1).
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over heads.
        discard_ratio: fraction of entries to zero per layer, in ``[0, 1)``.

    Returns:
        The rollout matrix.

    Shape:
        each attention ``(N, heads, T, T)`` -> ``(N, T, T)``.

    Raises:
        ValueError: an unknown head fusion, a discard ratio outside ``[0, 1)``, attentions of the wrong shape.
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
    if isinstance(discard_ratio, bool) or not isinstance(discard_ratio, (int, float)) or not 0 <= discard_ratio < 1:
        raise ValueError(f"discard_ratio must be a number in [0, 1), got {discard_ratio!r}")
    attentions = _check_attentions(attentions)
    n, _, t, _ = attentions[0].shape
    eye = torch.eye(t, dtype=attentions[0].dtype, device=attentions[0].device)
    result = eye.expand(n, t, t)
    drop = int(discard_ratio * t * t)
    for attention in attentions:
        fused = _fuse_heads(attention, head_fusion)
        if drop:
            flat = fused.flatten(1)
            lowest = flat.topk(drop, dim=1, largest=False).indices
            fused = flat.scatter(1, lowest, 0.0).view(n, t, t)
        fused = fused + eye
        fused = fused / fused.sum(dim=-1, keepdim=True)
        result = fused @ result
    return result


def _class_row(matrix: Tensor, probe: ViTProbe) -> Tensor:
    """The class token's row over the patch tokens, as ``(N, h, w)``."""
    return matrix[:, 0, probe.num_prefix_tokens :].reshape(matrix.shape[0], *probe.grid)


def _finish(maps: Tensor, images: Tensor, to_image_size: bool, differentiable: bool) -> Tensor:
    if to_image_size:
        maps = resize_maps(maps, images.shape[-2:])
    return maps if differentiable else maps.detach()


def attention_rollout(
    model: Classifier,
    images: Tensor,
    *,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    upsample: bool = False,
    differentiable: bool = False,
) -> Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): the class token's row of :func:`rollout` over the patches.

    Class-agnostic. Values are the rollout's (they sum to at most 1 over the patches; the rest goes to prefix
    tokens), not rescaled.

    Args:
        model: a ViT classifier with a class token (timm or open_clip).
        images: pixels in [0, 1], at the model's input size.
        head_fusion: ``"mean"`` (default, the paper's), ``"max"`` or ``"min"``.
        discard_ratio: fraction of each layer's smallest fused attention entries to zero, in ``[0, 1)``
            (default 0, the paper's; vit-explain uses 0.9 with max fusion).
        upsample: return maps bilinearly resized to the image size instead of the patch grid.
        differentiable: keep the autograd graph.

    Returns:
        Rollout maps.

    Shape:
        images ``(N, C, H, W)`` -> ``(N, h, w)``, or ``(N, H, W)`` with ``upsample=True``.

    Raises:
        ValueError: not a readable ViT (CNNs included), no class token, bad images, head fusion or discard ratio.
    """
    model = check_classifier(model, "attention_rollout")
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
    with torch.enable_grad() if differentiable else torch.no_grad():
        probe = vit_probe(model, images)
        require_class_token(model, probe, "attention_rollout")
        matrix = rollout(probe.attentions, head_fusion=head_fusion, discard_ratio=discard_ratio)
    return _finish(_class_row(matrix, probe), images, upsample, differentiable)


def _requiring_grad(images: Tensor) -> Tensor:
    # gradients are taken with respect to attentions or tokens; a leaf that requires grad guarantees they are in
    # a graph even when every parameter is frozen (a frozen CLIP tower), at no extra backward cost
    return images if images.requires_grad else images.detach().requires_grad_(True)


def gradient_rollout(
    model: Classifier,
    images: Tensor,
    *,
    labels: Tensor | None = None,
    upsample: bool = False,
    differentiable: bool = False,
) -> Tensor:
    """Gradient-weighted attention rollout (Chefer et al., 2021): ``R <- R + mean_h (dS/dA * A)^+ @ R``.

    Starting from ``R = I`` and running through the layers in forward order, each attention ``A`` (per head) is
    multiplied element-wise by the gradient of the class score ``S`` with respect to it, negative values are
    clipped, heads are averaged, and the result is accumulated. The map is the class token's row over the
    patches, unscaled.

    Args:
        model: a ViT classifier with a class token (timm or open_clip). open_clip's ``nn.MultiheadAttention``
            returns its weights outside the autograd graph, so for this call each attention is recomputed
            explicitly (same values) with the probabilities in the graph.
        images: pixels in [0, 1], at the model's input size.
        labels: the class to explain per image, ``(N,)``; default the top-1 prediction.
        upsample: return maps bilinearly resized to the image size.
        differentiable: keep the graph (double backward) so a loss on the maps back-propagates.

    Returns:
        Rollout maps.

    Shape:
        images ``(N, C, H, W)`` -> ``(N, h, w)``, or ``(N, H, W)`` with ``upsample=True``.

    Raises:
        ValueError: not a readable ViT, no class token, bad images or labels, attention outside the graph.
    """
    model = check_classifier(model, "gradient_rollout")
    check_images(images, channels=model.input_size[0])
    labels = check_label_per_image(labels, images.shape[0], model.num_classes)
    with torch.enable_grad():
        with _attention_in_graph(_vit_parts(model)):
            probe = vit_probe(model, _requiring_grad(images))
        require_class_token(model, probe, "gradient_rollout")
        score = probe.logits.gather(1, select_classes(probe.logits, labels, 1)).sum()
        grads = torch.autograd.grad(score, probe.attentions, create_graph=differentiable, allow_unused=True)
        if any(g is None for g in grads):
            raise ValueError(
                f"gradient_rollout: {model.name or type(model.net).__name__} returns attention weights outside "
                "the autograd graph (nn.MultiheadAttention, as in open_clip), so they have no gradient; use "
                "token_gradient_rollout or attention_rollout"
            )
        n, _, t, _ = probe.attentions[0].shape
        eye = torch.eye(t, dtype=score.dtype, device=score.device)
        result = eye.expand(n, t, t)
        for attention, grad in zip(probe.attentions, grads, strict=True):
            weighted = (grad * attention).clamp(min=0).mean(dim=1)
            result = result + weighted @ result
    return _finish(_class_row(result, probe), images, upsample, differentiable)


def token_weights(tokens: Tensor, gradients: Tensor) -> Tensor:
    """A-TPT's token importances: ``W = N([<T, dS/dT>_d]^+)``.

    The inner product of each token with its gradient over the embedding dimension, ReLU, then l1-normalised
    over the tokens of each image (all zeros stay zeros).

    Shape:
        tokens, gradients ``(N, T, D)`` -> ``(N, T)``.
    """
    if tokens.shape != gradients.shape or tokens.ndim != 3:
        raise ValueError(
            f"tokens and gradients must both have shape (N, T, D), got {tuple(tokens.shape)} and "
            f"{tuple(gradients.shape)}"
        )
    weights = (tokens * gradients).sum(dim=-1).clamp(min=0)
    total = weights.sum(dim=-1, keepdim=True)
    return weights / torch.where(total > 0, total, torch.ones_like(total))


def token_weighted_rollout(attentions: Sequence[Tensor], weights: Sequence[Tensor]) -> Tensor:
    """A-TPT's two-layer rollout matrix from the last two layers' attentions and token weights.

    Per layer ``b``: ``Ahat_b = I + mean_h (A_b diag(W_b))^+`` (column ``j`` of every head scaled by ``W_b[j]``).
    Then ``Ahat_avg = (Ahat_{B-1} + Ahat_B) / 2`` and ``Ahat = Ahat_B @ Ahat_avg``.

    Args:
        attentions: ``(A_{B-1}, A_B)``.
        weights: ``(W_{B-1}, W_B)`` from :func:`token_weights`.

    Returns:
        ``Ahat``.

    Shape:
        attentions ``(N, heads, T, T)``, weights ``(N, T)`` -> ``(N, T, T)``.
    """
    attentions = _check_attentions(attentions)
    weights = list(weights)
    if len(attentions) != 2 or len(weights) != 2:
        raise ValueError(f"need the last two layers' attentions and weights, got {len(attentions)} and {len(weights)}")
    n, _, t, _ = attentions[0].shape
    if any(w.shape != (n, t) for w in weights):
        raise ValueError(f"weights must have shape ({n}, {t}), got {[tuple(w.shape) for w in weights]}")
    eye = torch.eye(t, dtype=attentions[0].dtype, device=attentions[0].device)
    penultimate, last = (
        eye + (a * w[:, None, None, :]).clamp(min=0).mean(dim=1) for a, w in zip(attentions, weights, strict=True)
    )
    return last @ ((penultimate + last) / 2)


def _token_weighted_product(attentions: Sequence[Tensor], weights: Sequence[Tensor]) -> Tensor:
    """``Ahat_L @ ... @ Ahat_1`` with ``Ahat_b = I + mean_h (A_b diag(W_b))^+`` (no last-two averaging)."""
    n, _, t, _ = attentions[0].shape
    eye = torch.eye(t, dtype=attentions[0].dtype, device=attentions[0].device)
    result = eye.expand(n, t, t)
    for a, w in zip(attentions, weights, strict=True):
        result = (eye + (a * w[:, None, None, :]).clamp(min=0).mean(dim=1)) @ result
    return result


def clip_and_scale(maps: Tensor, quantile: float = 0.99) -> Tensor:
    """Clip each map at its own ``quantile`` (linear interpolation, :func:`torch.quantile`), then min-max to [0, 1].

    Shape:
        ``(N, ...)`` -> same; statistics are per image over everything but the first axis.
    """
    if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) or not 0 < quantile <= 1:
        raise ValueError(f"quantile must be a number in (0, 1], got {quantile!r}")
    flat = maps.flatten(1)
    top = torch.quantile(flat, float(quantile), dim=1, keepdim=True)
    flat = torch.minimum(flat, top)
    return min_max(flat, flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)).view_as(maps)


def token_gradient_rollout(
    model: Classifier,
    images: Tensor,
    *,
    labels: Tensor | None = None,
    quantile: float = 0.99,
    layers: str = "last_two",
    upsample: bool = False,
    differentiable: bool = False,
) -> Tensor:
    """A-TPT's token-gradient reinforced attention rollout, the class token's row over the patches.

    Recipe, for the last two blocks ``b in {B-1, B}``: ``T_b`` are the tokens entering block ``b`` (the keys and
    values its attention ``A_b`` mixes), ``W_b = `` :func:`token_weights` ``(T_b, dS/dT_b)``,
    ``Ahat = `` :func:`token_weighted_rollout` ``((A_{B-1}, A_B), (W_{B-1}, W_B))``; the map is ``Ahat``'s class
    token row over the patches, clipped at its ``quantile`` and min-max scaled to [0, 1]
    (:func:`clip_and_scale`). Only token gradients are needed (first order), so this works on open_clip
    towers too.

    Args:
        model: a ViT classifier with a class token and at least two blocks (timm or open_clip).
        images: pixels in [0, 1], at the model's input size.
        labels: the class to explain per image, ``(N,)``; default the top-1 prediction.
        quantile: clipping quantile (0.99 in A-TPT).
        layers: ``"last_two"`` (A-TPT) or ``"all"``: token weights on every block and the plain product
            ``prod_b Ahat_b`` over all of them, without the last-two averaging (A-TPT's ablation).
        upsample: return maps bilinearly resized to the image size (values then stay in [0, 1]).
        differentiable: keep the graph (double backward) so a loss on the maps back-propagates.

    Returns:
        Maps in [0, 1].

    Shape:
        images ``(N, C, H, W)`` -> ``(N, h, w)``, or ``(N, H, W)`` with ``upsample=True``.

    Raises:
        ValueError: not a readable ViT, fewer than two blocks, no class token, bad images, labels or quantile.
    """
    model = check_classifier(model, "token_gradient_rollout")
    check_images(images, channels=model.input_size[0])
    labels = check_label_per_image(labels, images.shape[0], model.num_classes)
    if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) or not 0 < quantile <= 1:
        raise ValueError(f"quantile must be a number in (0, 1], got {quantile!r}")
    if layers not in TOKEN_ROLLOUT_LAYERS:
        raise ValueError(f"layers must be one of {TOKEN_ROLLOUT_LAYERS}, got {layers!r}")
    parts = _vit_parts(model)
    if len(parts.blocks) < 2:
        raise ValueError(f"token_gradient_rollout averages the last two blocks; the model has {len(parts.blocks)}")
    if layers == "all":
        blocks = {f"block{i}": block for i, block in enumerate(parts.blocks)}
    else:
        blocks = {"penultimate": parts.blocks[-2], "last": parts.blocks[-1]}
    with torch.enable_grad():
        with ActivationHooks(model, blocks, read="input") as hooks:
            probe = vit_probe(model, _requiring_grad(images))
        require_class_token(model, probe, "token_gradient_rollout")
        score = probe.logits.gather(1, select_classes(probe.logits, labels, 1)).sum()
        grads = hooks.grad(score, create_graph=differentiable)
        weights = []
        for name in blocks:
            tokens, grad = hooks.activations[name], grads[name]
            if not parts.batch_first:
                tokens, grad = tokens.transpose(0, 1), grad.transpose(0, 1)
            weights.append(token_weights(tokens, grad))
        if layers == "all":
            matrix = _token_weighted_product(probe.attentions, weights)
        else:
            matrix = token_weighted_rollout(probe.attentions[-2:], weights)
        maps = clip_and_scale(_class_row(matrix, probe), quantile)
    return _finish(maps, images, upsample, differentiable)
