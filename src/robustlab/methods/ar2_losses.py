"""AR2's objectives: the CAM-alignment loss of refinement, the fine-tuning loss and the AugMix baseline's loss.

BatchNorm policy (issue 18), the one both :func:`refinement_loss` and :func:`finetune_loss` follow:

- **refinement** computes every CAM with BatchNorm in eval mode, in the student as in the frozen reference, so
  ``L_CAM`` on two identical models is exactly 0 for the clean term and refinement changes only weights that
  move the maps (it does not re-estimate BatchNorm statistics: that is the separate ``bn_adapt`` baseline);
- **fine-tuning** (and AugMix) sends clean and corrupted images through the network as **one mixed batch**, so
  in train mode a single set of batch statistics normalises both halves and the running statistics follow the
  mixture the model is trained for.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.explain.cam import cam
from robustlab.methods.augmix import augmix
from robustlab.models.classifier import Classifier


def default_k(num_classes: int) -> int:
    """Size of the class set: 3 for at most 10 classes, 5 otherwise (never more than ``num_classes``)."""
    return min(3 if num_classes <= 10 else 5, num_classes)


@torch.no_grad()
def class_set(reference: Classifier, images: Tensor, labels: Tensor, k: int) -> Tensor:
    """The classes whose CAMs are aligned: the reference's top-``k`` on the clean images, true label included.

    When the true label is not among the top ``k``, it replaces the ``k``-th (lowest-ranked) class.

    Shape:
        images ``(N, C, H, W)``, labels ``(N,)`` -> classes ``(N, k)`` int64, the true label in every row.
    """
    top = reference(images).topk(k, dim=1).indices
    labels = labels.to(top.device)
    missing = ~(top == labels[:, None]).any(dim=1)
    top[missing, -1] = labels[missing]
    return top


def normalize_cam(raw: Tensor, eps: float = 1e-8) -> Tensor:
    """``N(M) = ReLU(M) / (max ReLU(M) + eps)`` per image and class, at the maps' own resolution.

    Unlike :func:`robustlab.explain.normalize_maps` (min-max for display) this keeps zero at zero, so a map that
    is negative everywhere stays all zeros. Differentiable.

    Shape:
        ``(N, k, h, w)`` -> ``(N, k, h, w)`` in [0, 1).
    """
    positive = F.relu(raw.float())
    return positive / (positive.amax(dim=(-2, -1), keepdim=True) + eps)


@torch.no_grad()
def cam_targets(reference: Classifier, images: Tensor, labels: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The reference's class set and its normalised clean CAMs (the alignment targets), without gradients.

    The maps come from :func:`robustlab.explain.cam` with the same class tensor the student's maps use, so on
    equal weights both are computed by the same kernels and agree bit for bit.

    Returns:
        ``(classes, targets)``.

    Shape:
        images ``(N, C, H, W)`` -> classes ``(N, k)``, targets ``(N, k, h, w)``.
    """
    classes = class_set(reference, images, labels, k)
    return classes, normalize_cam(cam(reference, images, labels=classes).raw)


@contextmanager
def batchnorm_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model``'s BatchNorm layers in eval mode (running statistics, no update) inside the block.

    The rest of the model keeps its mode; each BatchNorm layer gets its own mode back on exit.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = [m.training for m in norms]
    for m in norms:
        m.eval()
    try:
        yield model
    finally:
        for m, mode in zip(norms, modes, strict=True):
            m.train(mode)


def refinement_terms(
    model: Classifier,
    reference: Classifier,
    images: Tensor,
    corrupted: Tensor,
    labels: Tensor,
    *,
    alpha: float = 0.5,
    k: int | None = None,
    differentiable: bool = True,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The two MSE terms of ``L_CAM`` (unweighted) and the corrupted logits, under the BN policy above.

    A term whose weight is 0 (``alpha`` 0 or 1) is not computed and returned as a zero tensor without graph;
    ``differentiable=False`` measures the terms without recording a graph (held-out monitoring).

    Returns:
        ``(clean_mse, corrupted_mse, logits)``: logits of the corrupted images (None when ``alpha == 1``).

    Shape:
        images, corrupted ``(N, C, H, W)``, labels ``(N,)`` -> two ``()`` tensors, logits ``(N, num_classes)``.
    """
    k = k or default_k(reference.num_classes)
    classes, targets = cam_targets(reference, images, labels, k)
    clean_mse = corrupted_mse = images.new_zeros((), dtype=torch.float32)
    logits = None
    with batchnorm_eval(model):
        # clean and corrupted in two passes, not one concatenated batch: the clean maps then equal the
        # reference's bit for bit when the weights do (a batch of another size may take another conv kernel)
        if alpha > 0:
            clean = normalize_cam(cam(model, images, labels=classes, differentiable=differentiable).raw)
            clean_mse = F.mse_loss(clean, targets)
        if alpha < 1:
            result = cam(model, corrupted, labels=classes, differentiable=differentiable)
            corrupted_mse = F.mse_loss(normalize_cam(result.raw), targets)
            logits = result.logits
    return clean_mse, corrupted_mse, logits


def refinement_loss(
    model: Classifier,
    reference: Classifier,
    images: Tensor,
    corrupted: Tensor,
    labels: Tensor,
    *,
    alpha: float = 0.5,
    k: int | None = None,
) -> tuple[Tensor, Tensor | None]:
    """``L_CAM``: MSE between the repairing model's normalised CAMs (clean and corrupted) and the reference's.

    ``L = alpha * MSE(N(M(x)), N(M0(x))) + (1 - alpha) * MSE(N(M(x~)), N(M0(x)))`` over the class set of
    :func:`class_set`; a term with weight 0 is not computed. Averaging over all ``(N, k, h, w)`` elements equals
    the mean over classes of per-class MSEs, since every class map has the same size. Both models' BatchNorm
    layers run in eval mode (see the module docstring), so on identical weights the clean term is exactly 0.

    Args:
        model: the repairing model; the graph through its CAMs is kept.
        reference: the frozen reference (called without gradients).
        images: clean pixels ``x``.
        corrupted: the corrupted pixels ``x~`` of the same images.
        labels: true labels.
        alpha: weight of the clean term.
        k: class-set size (default :func:`default_k`).

    Returns:
        ``(loss, logits)``: logits of the corrupted images (None when ``alpha == 1``).

    Shape:
        images, corrupted ``(N, C, H, W)``, labels ``(N,)`` -> loss ``()``, logits ``(N, num_classes)``.
    """
    clean, noisy, logits = refinement_terms(model, reference, images, corrupted, labels, alpha=alpha, k=k)
    return alpha * clean + (1 - alpha) * noisy, logits


def finetune_loss(model: nn.Module, images: Tensor, corrupted: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """``CE(f(x), y) + CE(f(x~), y)``, clean and corrupted images in one mixed batch (one set of BN statistics).

    Returns:
        ``(loss, logits)``: logits of the corrupted images.

    Shape:
        images, corrupted ``(N, C, H, W)``, labels ``(N,)`` -> loss ``()``, logits ``(N, K)``.
    """
    clean, noisy = model(torch.cat([images, corrupted])).split(len(images))
    return F.cross_entropy(clean, labels) + F.cross_entropy(noisy, labels), noisy


def augmix_loss(
    model: nn.Module, images: Tensor, labels: Tensor, *, jsd_weight: float = 12.0, severity: int = 3,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """AugMix training loss: ``CE(f(x), y) + jsd_weight * JSD(p(x), p(aug1), p(aug2))`` (Hendrycks et al.).

    The clean image and its two AugMix views form one mixed batch, as in the AugMix reference code.

    Returns:
        ``(loss, logits)`` of the clean images.

    Shape:
        images ``(N, C, H, W)``, labels ``(N,)`` -> loss ``()``, logits ``(N, K)``.
    """
    views = torch.cat([images, augmix(images, severity=severity, generator=generator),
                       augmix(images, severity=severity, generator=generator)])  # fmt: skip
    clean, aug1, aug2 = model(views).split(len(images))
    probs = [F.softmax(z.float(), dim=1) for z in (clean, aug1, aug2)]
    mixture = torch.clamp(torch.stack(probs).mean(dim=0), 1e-7, 1).log()
    jsd = sum(F.kl_div(mixture, p, reduction="batchmean") for p in probs) / 3
    return F.cross_entropy(clean, labels) + jsd_weight * jsd, clean
