"""A-TPT's pieces around the prompt: augmented views, attention maps, attention-guided mixing, view fusion.

Everything works on one test image's batch of views at once (no per-view Python loop) and draws every random
choice from an explicit CPU generator, so a sample's views do not depend on the device or on other samples.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab.explain import gradient_rollout, token_gradient_rollout, total_variation
from robustlab.explain.hooks import ActivationHooks
from robustlab.explain.rollout import clip_and_scale
from robustlab.methods.atpt_prompt import clip_of
from robustlab.methods.augmix import augmix
from robustlab.models.classifier import Classifier

ATTENTION_KINDS = ("token_gradient", "gradient", "token_gradient_all_layers")
"""``token_gradient``: A-TPT's last-two-block token-gradient rollout (default); ``gradient``: the plain gradient
rollout of Chefer et al. (ablation "no token-gradient refinement"); ``token_gradient_all_layers``: token weights on
every block, rolled out through all of them (ablation "no last-two-layer averaging")."""


def sample_resized_crops(
    n: int,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random-resized-crop (+ horizontal flip) parameters as affine matrices for :func:`apply_affine`.

    The crop covers ``s`` of the image area (``s ~ U(scale)``) with aspect ratio ``exp(U(log ratio))``, its side
    fractions clamped to 1 (torchvision retries instead, then falls back to a centre crop; clamping keeps the draw
    count fixed, so a seed gives the same crops whatever the outcome), and a uniform position inside the image.

    Returns:
        ``(n, 2, 3)`` float32 matrices in ``grid_sample``'s normalised coordinates.
    """
    area = torch.empty(n, dtype=torch.float64).uniform_(scale[0], scale[1], generator=generator)
    log_ratio = torch.empty(n, dtype=torch.float64).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=generator
    )
    aspect = log_ratio.exp()
    width = (area * aspect).sqrt().clamp(max=1.0)
    height = (area / aspect).sqrt().clamp(max=1.0)
    cx = width / 2 + torch.rand(n, generator=generator, dtype=torch.float64) * (1 - width)
    cy = height / 2 + torch.rand(n, generator=generator, dtype=torch.float64) * (1 - height)
    mirrored = torch.rand(n, generator=generator) < 0.5
    sign = torch.where(mirrored & flip, -1.0, 1.0).to(torch.float64)
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = width * sign
    theta[:, 0, 2] = 2 * cx - 1
    theta[:, 1, 1] = height
    theta[:, 1, 2] = 2 * cy - 1
    return theta.float()


def apply_affine(image: Tensor, theta: Tensor) -> Tensor:
    """Resample one image through each affine matrix (bilinear), differentiable in the image.

    Shape:
        image ``(C, H, W)``, theta ``(n, 2, 3)`` -> ``(n, C, H, W)``.
    """
    theta = theta.to(image.device, image.dtype)
    batch = image.unsqueeze(0).expand(theta.shape[0], -1, -1, -1)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False).clamp(0, 1)


def straight_through_augmix(images: Tensor, *, severity: int, width: int, generator: torch.Generator | None) -> Tensor:
    """AugMix views whose backward pass is the identity (BPDA; the 8-bit operations have no useful gradient).

    The forward values are exactly :func:`robustlab.methods.augmix`'s.
    """
    mixed = augmix(images.detach(), severity=severity, width=width, depth=-1, alpha=1.0, generator=generator)
    return images + (mixed - images).detach()


def clip_resnet_grad_cam(model: Classifier, images: Tensor, labels: Tensor) -> Tensor:
    """Grad-CAM on the last residual stage of an open_clip ModifiedResNet tower, min-max scaled per image.

    ``sum_k alpha_k A_k`` with ``alpha_k`` the spatial mean of ``d logit_label / d A_k``, ReLU, min-max.

    Shape:
        images ``(N, 3, H, W)``, labels ``(N,)`` -> ``(N, h, w)`` on the feature grid.
    """
    layer4 = clip_of(model).visual.get_submodule("layer4")
    with torch.enable_grad(), ActivationHooks(model, {"layer4": layer4}) as hooks:
        leaf = images.detach().requires_grad_(True)
        logits = model(leaf)
        score = logits.gather(1, labels[:, None]).sum()
        grads = hooks.grad(score)
        features = hooks.activations["layer4"]
    weights = grads["layer4"].mean(dim=(2, 3), keepdim=True)
    maps = (weights * features).sum(dim=1).clamp(min=0).detach()
    return clip_and_scale(maps, 1.0)


def is_vit_tower(model: Classifier) -> bool:
    visual = clip_of(model).visual
    return hasattr(visual, "transformer") and hasattr(visual, "grid_size")


def attention_maps(
    model: Classifier, images: Tensor, labels: Tensor, kind: str = "token_gradient", quantile: float = 0.99
) -> Tensor:
    """Each view's attention map on the token (ViT) or feature (ResNet) grid, in [0, 1], detached.

    ViT towers use the rollout named by ``kind`` (see :data:`ATTENTION_KINDS`); ResNet towers use
    :func:`clip_resnet_grad_cam` whatever the kind. ``labels`` are the explained classes (A-TPT: the top-1
    zero-shot class of each view).

    Shape:
        images ``(N, 3, H, W)``, labels ``(N,)`` -> ``(N, h, w)``.
    """
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"attention must be one of {ATTENTION_KINDS}, got {kind!r}")
    images = images.detach()
    if not is_vit_tower(model):
        return clip_resnet_grad_cam(model, images, labels)
    if kind == "gradient":
        return clip_and_scale(gradient_rollout(model, images, labels=labels), quantile)
    layers = "all" if kind == "token_gradient_all_layers" else "last_two"
    return token_gradient_rollout(model, images, labels=labels, quantile=quantile, layers=layers)


def upsample_maps(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of ``(N, h, w)`` maps to ``(N, H, W)``."""
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def attention_mix(
    base: Tensor, augmented: Tensor, maps: Tensor, *, ratio: float = 0.2, m_high: float = 0.2, m_low: float = 0.8
) -> Tensor:
    """A-TPT's spatially non-uniform mix ``(1 - lambda) * base + lambda * augmented``.

    ``lambda = m_high`` on the top ``ceil(ratio * H * W)`` pixels of each (upsampled) attention map and
    ``m_low`` elsewhere: with the defaults the most attended 20 % of pixels keep 80 % of the base view and the
    rest take 80 % of the AugMix image (paper notation: ``r``, ``m_high < m_low``).

    Shape:
        base, augmented ``(N, C, H, W)``; maps ``(N, h, w)`` (any grid) -> ``(N, C, H, W)``.
    """
    n, _, height, width = base.shape
    up = upsample_maps(maps.to(base.dtype), (height, width)).flatten(1)
    keep = max(1, math.ceil(ratio * height * width))
    top = up.topk(keep, dim=1).indices
    high = torch.zeros_like(up).scatter(1, top, 1.0).view(n, 1, height, width)
    lam = high * m_high + (1 - high) * m_low
    return (1 - lam) * base + lam * augmented


def entropy(logits: Tensor) -> Tensor:
    """Shannon entropy (nats) of ``softmax(logits)`` per row: ``(N, K) -> (N,)``."""
    log_p = logits.log_softmax(dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


def marginal_entropy(logits: Tensor) -> Tensor:
    """TPT's loss: the entropy of the mean of the views' probabilities (computed in log space), a scalar."""
    log_p = logits.log_softmax(dim=-1)
    mean_log_p = torch.logsumexp(log_p, dim=0) - math.log(log_p.shape[0])
    return -(mean_log_p.exp() * mean_log_p).sum()


def tv_weights(maps: Tensor, temperature: float = 1.0) -> Tensor:
    """A-TPT's reliability weights ``softmax(-TV(A_i) / temperature)`` over views (TV on the map's own grid).

    Shape:
        maps ``(N, h, w)`` -> ``(N,)``, summing to 1.
    """
    return torch.softmax(-total_variation(maps.float()) / temperature, dim=0)


def rtpt_weights(features: Tensor, neighbours: int = 20, temperature: float = 0.01) -> Tensor:
    """R-TPT-style reliability weights from the views' image features.

    A view's reliability is the mean cosine similarity to its ``neighbours`` most similar other views (fewer when
    there are fewer views); weights are ``softmax(reliability / temperature)``. Our reading of R-TPT's
    reliability-based ensembling; the temperature is this library's choice.

    Shape:
        features ``(N, D)`` (unit norm) -> ``(N,)``, summing to 1.
    """
    n = features.shape[0]
    if n == 1:
        return torch.ones(1, device=features.device)
    sim = features.float() @ features.float().T
    sim = sim.masked_fill(torch.eye(n, dtype=torch.bool, device=sim.device), float("-inf"))
    reliability = sim.topk(min(neighbours, n - 1), dim=1).values.mean(dim=1)
    return torch.softmax(reliability / temperature, dim=0)


def weight_entropy(weights: Tensor) -> float:
    """Entropy (nats) of a weight vector; ``log N`` for uniform weights, 0 for one-hot."""
    w = weights.detach().float().clamp(min=1e-12)
    return float(-(w * w.log()).sum())
