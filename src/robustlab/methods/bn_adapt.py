"""BatchNorm adaptation (Schneider et al., 2020): re-estimate BatchNorm statistics on shifted images, no gradients.

The baseline any corruption-repair method has to beat: replacing the running mean and variance of every
BatchNorm layer with statistics of corrupted images already removes much of the accuracy a corruption costs,
without changing a single weight. Here the statistics are the exact average over the given batches (PyTorch's
cumulative mode, ``momentum=None``), estimated from scratch (Schneider et al.'s prior weight ``N = 0``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import torch
from torch import Tensor, nn

_BatchNorm = nn.modules.batchnorm._BatchNorm


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers of ``model`` that track running statistics."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def adapt_batchnorm(model: nn.Module, batches: Iterable[Tensor]) -> int:
    """Replace every BatchNorm layer's running statistics by their average over ``batches``; no weight changes.

    Each layer's statistics are reset (and restored if the call fails), then accumulated as an equal-weight
    average over the batches (each batch's own mean and unbiased variance, as BatchNorm in train mode computes
    them). Only ``running_mean``, ``running_var`` and ``num_batches_tracked`` change; parameters and every
    layer's ``momentum`` are as before, and the model is left in eval mode.

    Args:
        model: a classifier with BatchNorm layers, taking pixels in [0, 1].
        batches: image batches (already corrupted), on the model's device.

    Returns:
        The number of images seen.

    Shape:
        each batch ``(B, C, H, W)``; ``B >= 2`` (a variance needs two samples).

    Raises:
        ValueError: a model without BatchNorm layers, no batches, or a batch of one image.
    """
    norms = batchnorm_layers(model)
    if not norms:
        raise ValueError("BatchNorm adaptation needs a model with BatchNorm layers that track running statistics")
    momenta = [m.momentum for m in norms]
    saved = [tuple(cast(Tensor, t).clone() for t in (m.running_mean, m.running_var, m.num_batches_tracked))
             for m in norms]  # fmt: skip
    seen = 0
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average: the exact mean over the batches
        model.eval()  # only BatchNorm runs in train mode: dropout and the like stay as at inference
        for m in norms:
            m.train()
        for images in batches:
            if len(images) < 2:
                raise ValueError(f"BatchNorm adaptation needs batches of at least 2 images, got {len(images)}")
            model(images)
            seen += len(images)
        if seen == 0:
            raise ValueError("BatchNorm adaptation got no batches; pass at least one batch of corrupted images")
    except BaseException:
        for m, (mean, var, count) in zip(norms, saved, strict=True):  # a failed call leaves the model as it was
            for buffer, value in zip((m.running_mean, m.running_var, m.num_batches_tracked), (mean, var, count),
                                     strict=True):  # fmt: skip
                cast(Tensor, buffer).copy_(value)
        raise
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.eval()
    return seen
