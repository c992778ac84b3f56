"""Explanations of image classifiers and how stable they are under perturbation.

- CNNs: :func:`cam` and :func:`grad_cam` (differentiable, for AR2's CAM alignment);
- ViTs: :func:`attention_maps` per layer and head, :func:`attention_rollout`, :func:`gradient_rollout` and
  A-TPT's :func:`token_gradient_rollout`;
- metrics on maps: :func:`map_cosine`, :func:`attention_cosine` (AFAT), :func:`topk_iou`,
  :func:`total_variation` (A-TPT), and the model-running :func:`cam_stability` / :func:`attention_stability`;
- :class:`ActivationHooks`, the hook context manager underneath, for reading any named submodule.

Every explainer is also registered in :data:`EXPLAINERS` with the uniform call
``explainer(model, images, *, labels=None, **params) -> (N, 1, H, W)``; :func:`explain` is the front door.
Plotting lives in :mod:`robustlab.explain.plot` (imports matplotlib only when called).
"""

from __future__ import annotations

from robustlab._front_door import make_callable
from robustlab.explain._common import normalize_maps
from robustlab.explain._registry import EXPLAINERS
from robustlab.explain.attention import attention_maps
from robustlab.explain.cam import CAMResult, cam, grad_cam

# imported for its @EXPLAINERS.register side effect
from robustlab.explain.explainers import explain, list_explainers
from robustlab.explain.hooks import ActivationHooks
from robustlab.explain.metrics import attention_cosine, map_cosine, topk_iou, total_variation
from robustlab.explain.rollout import (
    HEAD_FUSIONS,
    attention_rollout,
    clip_and_scale,
    gradient_rollout,
    rollout,
    token_gradient_rollout,
    token_weighted_rollout,
    token_weights,
)
from robustlab.explain.stability import attention_stability, cam_stability

__all__ = [
    "EXPLAINERS",
    "HEAD_FUSIONS",
    "ActivationHooks",
    "CAMResult",
    "attention_cosine",
    "attention_maps",
    "attention_rollout",
    "attention_stability",
    "cam",
    "cam_stability",
    "clip_and_scale",
    "map_cosine",
    "explain",
    "grad_cam",
    "gradient_rollout",
    "list_explainers",
    "normalize_maps",
    "rollout",
    "token_gradient_rollout",
    "token_weighted_rollout",
    "token_weights",
    "topk_iou",
    "total_variation",
]

# robustlab.explain(model, images, method) calls explain(): the subpackage is also the top-level front door
make_callable(__name__, explain)
