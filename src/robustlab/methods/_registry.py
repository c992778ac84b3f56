"""The methods registry: repair / training methods by name (``"ar2"``, later ``"afat"``, ``"a3"``, ``"atpt"``)."""

from __future__ import annotations

from robustlab._registry import Registry

METHODS = Registry("method")
"""Method name -> its entry function (e.g. ``METHODS.get("ar2")`` is :func:`robustlab.methods.ar2.repair`)."""
