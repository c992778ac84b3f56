"""Class activation maps for CNNs: CAM (Zhou et al., 2016) and Grad-CAM (Selvaraju et al., 2017).

Both weight the channels of the last convolutional feature map ``A`` (``(N, K, h, w)``, from
:func:`robustlab.models.cam_features`) and sum them: ``map_c = sum_k alpha[c, k] * A_k``. They differ only in
the channel weights, so each method is one small function returning ``alpha`` and :func:`_class_maps` does the
rest (pytorch-grad-cam's structure, but batched torch that gradients flow through):

- CAM: ``alpha[c, k] = W[c, k]``, the linear layer after global average pooling (bias excluded);
- Grad-CAM: ``alpha[c, k] = mean_{u,v} d logit_c / d A_k[u, v]``.

For a GAP + linear head the two agree up to the constant ``1 / (h * w)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from robustlab._checks import check_images
from robustlab.explain._common import check_classifier, check_k, check_labels_for, normalize_maps, select_classes
from robustlab.models.classifier import Classifier
from robustlab.models.probes import cam_features, classifier_weights, cnn_net


@dataclass(frozen=True)
class CAMResult:
    """What :func:`cam` and :func:`grad_cam` return.

    Attributes:
        raw: one map per image and explained class, before any ReLU or scaling, at the feature-map resolution.
        maps: the first explained class's map (``classes[:, 0]``: the top-1 prediction, or ``labels[:, 0]``)
            normalised for display and comparison by :func:`robustlab.explain.normalize_maps` (ReLU, bilinear
            upsampling to the input size, per-image min-max to [0, 1]).
        classes: the explained classes, in the order of ``raw``'s second axis.
        logits: the model's logits for the images.

    Shape:
        raw ``(N, k, h, w)``; maps ``(N, 1, H, W)``; classes ``(N, k)`` int64; logits ``(N, num_classes)``.
    """

    raw: Tensor
    maps: Tensor
    classes: Tensor
    logits: Tensor


ChannelWeights = Callable[[Classifier, Tensor, Tensor, Tensor, bool], Tensor]


def _cam_weights(model: Classifier, features: Tensor, logits: Tensor, classes: Tensor, create_graph: bool) -> Tensor:
    weight, _ = classifier_weights(model)
    return weight[classes]  # (N, k, K)


def _grad_cam_weights(
    model: Classifier, features: Tensor, logits: Tensor, classes: Tensor, create_graph: bool
) -> Tensor:
    scores = logits.gather(1, classes)  # (N, k)
    # one gradient call per explained class (k is small); summing over the batch is exact because an image's
    # logits depend only on its own features (the head has no cross-sample operation)
    alphas = []
    for j in range(classes.shape[1]):
        (grad,) = torch.autograd.grad(scores[:, j].sum(), features, retain_graph=True, create_graph=create_graph)
        alphas.append(grad.mean(dim=(2, 3)))
    return torch.stack(alphas, dim=1)  # (N, k, K)


def _class_maps(
    model: object,
    images: Tensor,
    channel_weights: ChannelWeights,
    *,
    labels: Tensor | None,
    k: int | None,
    differentiable: bool,
    what: str,
) -> CAMResult:
    model = check_classifier(model, what)
    check_images(images, channels=model.input_size[0])
    labels = check_labels_for(labels, images.shape[0], model.num_classes, k)
    k = labels.shape[1] if labels is not None else check_k(k, model.num_classes)
    with torch.enable_grad() if differentiable else torch.no_grad():
        features, logits = cam_features(model, images)
    if not differentiable or not features.requires_grad:
        # Grad-CAM needs d logits / d features even when no graph is kept: cut the graph at the feature map
        # (cheap: only the head is re-run) so nothing upstream is recorded or differentiated
        features = features.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = cnn_net(model).forward_head(features)
    classes = select_classes(logits, labels, k)
    with torch.enable_grad():
        alpha = channel_weights(model, features, logits, classes, differentiable)
        raw = torch.einsum("nkc,nchw->nkhw", alpha, features)
    if not differentiable:
        raw, logits = raw.detach(), logits.detach()
    maps = normalize_maps(raw[:, :1], size=images.shape[-2:])
    return CAMResult(raw=raw, maps=maps, classes=classes, logits=logits)


def cam(
    model: Classifier,
    images: Tensor,
    *,
    labels: Tensor | None = None,
    k: int | None = None,
    differentiable: bool = False,
) -> CAMResult:
    """Class activation maps (Zhou et al., 2016): ``CAM_c = sum_k W[c, k] * A_k``.

    ``A`` is the last convolutional feature map and ``W`` the linear layer after global average pooling, so
    ``mean_{u,v} CAM_c + b_c`` equals logit ``c``. The model's mode is left as it is.

    Args:
        model: a CNN whose head is global average pooling + one linear layer (CIFAR ResNets, ``small_cnn``,
            timm ResNets, EfficientNet-Lite).
        images: pixels in [0, 1].
        labels: classes to explain, ``(N,)`` or ``(N, k)``; default the top-``k`` predicted classes.
        k: how many top predicted classes to explain (default 1); must match ``labels`` if both are given.
        differentiable: keep the autograd graph, so a loss on the maps trains the backbone (and the
            classifier, unless its parameters have ``requires_grad=False``). Otherwise every returned tensor
            is detached and no graph is recorded.

    Returns:
        A :class:`CAMResult` (raw maps, normalised map of the first class, classes, logits).

    Shape:
        images ``(N, C, H, W)`` -> raw ``(N, k, h, w)``, maps ``(N, 1, H, W)``.

    Raises:
        ValueError: not a Classifier, images outside the contract, a model without a convolutional feature map
            (ViTs: use the rollouts), a head that is not GAP + linear (use :func:`grad_cam`), bad labels or
            ``k`` outside ``1..num_classes``.

    Example:
        >>> result = cam(create_model("cifar:resnet20"), images, k=3)
        >>> result.raw.shape, result.maps.shape   # (N, 3, 8, 8), (N, 1, 32, 32)
    """
    return _class_maps(model, images, _cam_weights, labels=labels, k=k, differentiable=differentiable, what="cam")


def grad_cam(
    model: Classifier,
    images: Tensor,
    *,
    labels: Tensor | None = None,
    k: int | None = None,
    differentiable: bool = False,
) -> CAMResult:
    """Grad-CAM (Selvaraju et al., 2017): ``sum_k alpha_k * A_k`` with ``alpha_k = mean_{u,v} d y_c / d A_k``.

    ``y_c`` is the logit of class ``c`` and ``A`` the last convolutional feature map. Any head works (no GAP +
    linear requirement). Gradients come from :func:`torch.autograd.grad`, so parameter ``.grad`` is never
    touched; the model's mode is left as it is. The raw maps are before Grad-CAM's usual ReLU, which
    :attr:`CAMResult.maps` applies.

    Args:
        model: a CNN classifier with a convolutional feature map (``forward_features`` / ``forward_head``).
        images: pixels in [0, 1].
        labels: classes to explain, ``(N,)`` or ``(N, k)``; default the top-``k`` predicted classes.
        k: how many top predicted classes to explain (default 1); must match ``labels`` if both are given.
        differentiable: keep the graph through the channel weights too (double backward, ``create_graph=True``),
            so a loss on the maps trains the backbone. Otherwise the returned tensors are detached and only the
            head is differentiated.

    Returns:
        A :class:`CAMResult`.

    Shape:
        images ``(N, C, H, W)`` -> raw ``(N, k, h, w)``, maps ``(N, 1, H, W)``.

    Raises:
        ValueError: not a Classifier, images outside the contract, a model without a convolutional feature map,
            bad labels or ``k``.
    """
    return _class_maps(
        model, images, _grad_cam_weights, labels=labels, k=k, differentiable=differentiable, what="grad_cam"
    )
