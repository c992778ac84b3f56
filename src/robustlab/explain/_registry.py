"""The explainer registry: uniform ``(model, images, *, labels=None, **params) -> (N, 1, H, W)`` callables."""

from __future__ import annotations

from robustlab._registry import Registry

EXPLAINERS = Registry("explainer")
