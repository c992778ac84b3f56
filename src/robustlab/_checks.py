"""Boundary validation shared by every public function (DESIGN.md, contract 7)."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor


def check_images(images: object, *, name: str = "images", channels: int | None = None) -> Tensor:
    """Check the image currency: a floating tensor ``(N, C, H, W)`` with values in [0, 1].

    Args:
        images: the value to check.
        name: argument name used in error messages.
        channels: required channel count, if any.

    Returns:
        ``images`` unchanged.

    Raises:
        ValueError: not a tensor, wrong rank, integer dtype, values outside [0, 1] or non-finite values.
    """
    if not isinstance(images, Tensor):
        raise ValueError(
            f"{name} must be a torch.Tensor of shape (N, C, H, W) with values in [0, 1], got {type(images).__name__}"
        )
    if images.ndim != 4:
        hint = " (add a batch dimension with images.unsqueeze(0))" if images.ndim == 3 else ""
        raise ValueError(f"{name} must have shape (N, C, H, W), got shape {tuple(images.shape)}{hint}")
    if not images.is_floating_point():
        hint = " (convert uint8 pixels with images.float() / 255)" if images.dtype == torch.uint8 else ""
        raise ValueError(f"{name} must be a floating point tensor with values in [0, 1], got {images.dtype}{hint}")
    if channels is not None and images.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels, got shape {tuple(images.shape)}")
    if images.numel():
        view = images.detach()
        if not view.is_contiguous() and view.is_contiguous(memory_format=torch.channels_last):
            # NHWC-backed batches (from uint8 HWC arrays): reduce over the contiguous permuted view, no copy
            view = view.permute(0, 2, 3, 1)
        lo, hi = torch.aminmax(view)
        lo_v, hi_v = float(lo), float(hi)
        if not (lo_v == lo_v and hi_v == hi_v) or lo_v in (float("inf"), float("-inf")) or hi_v == float("inf"):
            raise ValueError(f"{name} contains NaN or infinite values")
        # a hair of tolerance for values produced by float arithmetic on [0, 1] data
        if lo_v < -1e-6 or hi_v > 1 + 1e-6:
            hint = ""
            if hi_v > 1.5:
                hint = " — pixels look like 0..255; divide by 255"
            elif lo_v < 0:
                hint = " — pixels look normalised; pass raw [0, 1] pixels, models normalise internally"
            raise ValueError(f"{name} must have values in [0, 1], got range [{lo_v:.4g}, {hi_v:.4g}]{hint}")
    return images


def check_labels(labels: object, n: int | None = None, *, num_classes: int | None = None) -> Tensor:
    """Check labels: an int64 tensor ``(N,)`` whose values index the classes.

    Raises:
        ValueError: wrong type, rank, dtype, length or a label outside ``[0, num_classes)``.
    """
    if not isinstance(labels, Tensor):
        raise ValueError(f"labels must be a torch.Tensor of shape (N,) and dtype int64, got {type(labels).__name__}")
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (N,), got shape {tuple(labels.shape)}")
    if labels.dtype != torch.int64:
        raise ValueError(f"labels must have dtype torch.int64, got {labels.dtype} (use labels.long())")
    if n is not None and labels.shape[0] != n:
        raise ValueError(f"labels has {labels.shape[0]} entries but there are {n} images")
    if num_classes is not None and labels.numel():
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"labels must lie in [0, {num_classes}), got range [{lo}, {hi}]")
    return labels


def check_severity(severity: object, *, low: int = 1, high: int = 5) -> int:
    """Check a corruption severity: an integer in ``[low, high]``.

    Raises:
        ValueError: not an integer or out of range.
    """
    if isinstance(severity, bool) or not isinstance(severity, int):
        if isinstance(severity, float) and severity.is_integer():
            severity = int(severity)
        else:
            raise ValueError(f"severity must be an integer in {low}..{high}, got {severity!r}")
    if not low <= severity <= high:
        raise ValueError(f"severity must be an integer in {low}..{high}, got {severity}")
    return severity


def warn_if_training(model: torch.nn.Module, what: str) -> None:
    """Warn when a model is in train mode where eval mode is expected (dropout / BN statistics)."""
    if model.training:
        warnings.warn(
            f"{what}: the model is in train mode, so dropout and batch-norm statistics make results random; "
            "call model.eval() unless this is intended",
            stacklevel=3,
        )


def close_matches(name: object, known: Iterable[str], *, n: int = 3, cutoff: float = 0.5) -> list[str]:
    """The known names most similar to ``name``, best first: the one place robustlab calls ``difflib``.

    Args:
        name: the name the user gave (anything; compared as ``str``).
        known: the valid names.
        n: at most this many suggestions.
        cutoff: the least similarity (``difflib`` ratio, 0..1) a suggestion needs.

    Returns:
        Up to ``n`` names from ``known``.
    """
    return difflib.get_close_matches(str(name), list(known), n=n, cutoff=cutoff)


def did_you_mean(name: object, known: Iterable[str], *, n: int = 3, cutoff: float = 0.5, prefix: str = "") -> str:
    """The suggestion sentence of an "unknown name" error: ``" Did you mean 'a', 'b'?"``, or ``""`` for none.

    Args:
        name: the name the user gave.
        known: the valid names.
        n: at most this many suggestions.
        cutoff: the least similarity a suggestion needs (see :func:`close_matches`).
        prefix: written before each suggestion, e.g. ``"timm:"`` when ``known`` lacks the spec's scheme.

    Returns:
        The sentence with a leading space, ready to follow the error's first sentence.
    """
    matches = close_matches(name, known, n=n, cutoff=cutoff)
    return f" Did you mean {', '.join(repr(prefix + m) for m in matches)}?" if matches else ""


def check_choice(value: object, choices: Sequence[str], name: str) -> str:
    """Check that an option is one of a fixed set of strings.

    Args:
        value: the option's value.
        choices: the valid values.
        name: the option's name in the message (``"norm"``, ``"A3 mode"``).

    Returns:
        ``value``.

    Raises:
        ValueError: ``value`` is not one of ``choices``; the message suggests close matches and lists them all.
    """
    if isinstance(value, str) and value in choices:
        return value
    raise ValueError(
        f"Unknown {name} {value!r}.{did_you_mean(value, choices)} The {name} must be one of {', '.join(choices)}."
    )
