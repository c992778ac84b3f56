"""Mixed precision: which autocast dtype a setting means on a device, and the autocast context for it.

Layer 1, shared by training (:func:`robustlab.train.fit`) and evaluation (:mod:`robustlab.engine`).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

__all__ = ["autocast", "resolve_amp"]


def resolve_amp(amp: bool | str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``, or None for full precision.

    Args:
        amp: None = on for CUDA and off elsewhere; True = on (bf16 unless the GPU lacks it, then fp16);
            False = off; ``"bf16"`` or ``"fp16"`` force a dtype.
        device: where the model runs.

    Raises:
        ValueError: an unknown ``amp`` value.
    """
    if amp is None:
        amp = device.type == "cuda"
    if amp is False:
        return None
    if amp is True:
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    raise ValueError(f"amp must be one of None, True, False, 'bf16', 'fp16', got {amp!r}")


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` for ``dtype``, or a no-op context for full precision."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
