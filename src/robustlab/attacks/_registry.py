"""The attack registry: every attack is ``attack(model, images, labels, *, generator=None, **params) -> images``."""

from __future__ import annotations

from robustlab._registry import Registry

ATTACKS = Registry("attack")
