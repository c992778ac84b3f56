"""Every explainer behind one call, so the engine and the CLI can pick one by name.

Each entry of :data:`EXPLAINERS` is registered under the name of the public function it wraps (``cam``,
``grad_cam``, ``attention_rollout``, ``gradient_rollout``, ``token_gradient_rollout``) and is called as
``explainer(model, images, *, labels=None, **params)``; it returns the explanation-map currency
``(N, 1, H, W)`` in [0, 1] made by :func:`robustlab.explain.normalize_maps` (ReLU, bilinear upsampling to the
image size, per-image min-max). ``params`` are the wrapped function's keyword arguments (``head_fusion``,
``discard_ratio``, ``quantile``, ``differentiable``, ...).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from robustlab.explain._common import normalize_maps
from robustlab.explain._registry import EXPLAINERS
from robustlab.explain.cam import cam, grad_cam
from robustlab.explain.rollout import attention_rollout, gradient_rollout, token_gradient_rollout
from robustlab.models.classifier import Classifier


def _no_upsample(params: dict[str, Any], name: str) -> None:
    if "upsample" in params:
        raise ValueError(f"the {name} explainer always returns image-sized maps; drop upsample=")


@EXPLAINERS.register(name="cam")
def _cam(model: Classifier, images: Tensor, *, labels: Tensor | None = None, **params: Any) -> Tensor:
    return cam(model, images, labels=labels, **params).maps


@EXPLAINERS.register(name="grad_cam")
def _grad_cam(model: Classifier, images: Tensor, *, labels: Tensor | None = None, **params: Any) -> Tensor:
    return grad_cam(model, images, labels=labels, **params).maps


@EXPLAINERS.register(name="attention_rollout")
def _attention_rollout(model: Classifier, images: Tensor, *, labels: Tensor | None = None, **params: Any) -> Tensor:
    # class-agnostic: labels are accepted for the uniform call and ignored
    _no_upsample(params, "attention_rollout")
    return normalize_maps(attention_rollout(model, images, **params), size=images.shape[-2:])


@EXPLAINERS.register(name="gradient_rollout")
def _gradient_rollout(model: Classifier, images: Tensor, *, labels: Tensor | None = None, **params: Any) -> Tensor:
    _no_upsample(params, "gradient_rollout")
    return normalize_maps(gradient_rollout(model, images, labels=labels, **params), size=images.shape[-2:])


@EXPLAINERS.register(name="token_gradient_rollout")
def _token_gradient_rollout(
    model: Classifier, images: Tensor, *, labels: Tensor | None = None, **params: Any
) -> Tensor:
    _no_upsample(params, "token_gradient_rollout")
    return normalize_maps(token_gradient_rollout(model, images, labels=labels, **params), size=images.shape[-2:])


def explain(model: Classifier, images: Tensor, method: str, *, labels: Tensor | None = None, **params: Any) -> Tensor:
    """Explanation maps from the registered explainer ``method``.

    Args:
        model: a classifier the method applies to (CNNs for ``cam`` / ``grad_cam``, ViTs for the rollouts).
        images: pixels in [0, 1].
        method: a name in :data:`EXPLAINERS` (see :func:`list_explainers`).
        labels: the class to explain per image, ``(N,)``; default the top-1 prediction (ignored by the
            class-agnostic ``attention_rollout``).
        params: keyword arguments of the method's function.

    Returns:
        Maps in [0, 1]: ReLU, bilinearly upsampled to the image size, min-max scaled per image.

    Shape:
        images ``(N, C, H, W)`` -> ``(N, 1, H, W)``.

    Raises:
        ValueError: an unknown method (with close matches), a model the method does not apply to, bad inputs.
    """
    return EXPLAINERS.get(method)(model, images, labels=labels, **params)


def list_explainers() -> list[str]:
    """Every registered explainer name."""
    return EXPLAINERS.names()
