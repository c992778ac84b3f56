"""robustlab: measure, explain and repair the robustness of image classifiers."""

from __future__ import annotations

from robustlab import _compat  # noqa: F401  (must run before anything imports torchvision)

__version__ = "0.1.0"
