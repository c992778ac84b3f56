"""timm models behind ``create_model("timm:<name>[.<tag>]")``.

Preprocessing facts (mean, std, input size, crop, interpolation) come from timm's own pretrained config
through ``timm.data.resolve_model_data_config``, so a timm model is evaluated exactly as timm evaluates it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from robustlab._checks import did_you_mean
from robustlab.models._common import imagenet_class_names, resolve_class_names
from robustlab.models._weights import load_into, read_state_dict
from robustlab.models.classifier import Classifier

# Errors timm / huggingface_hub / urllib raise when weights cannot be fetched (network, cache, missing file).
# HTTP and hub errors subclass OSError.
_FETCH_ERRORS = (OSError, RuntimeError, ValueError)


def timm_family(net: nn.Module) -> str:
    """Classify a timm network as ``"vit"``, ``"hybrid"`` or ``"cnn"`` (best effort, from its modules).

    Plain ViTs (``blocks`` + ``patch_embed`` without a conv backbone) are ``"vit"``; attention models whose
    only convolutions patchify (kernel == stride, e.g. Swin) too. Attention plus real convolutions (CoAtNet,
    MaxViT, LeViT, ViT-hybrids) is ``"hybrid"``; no attention at all is ``"cnn"``.
    """
    if hasattr(net, "blocks") and hasattr(net, "patch_embed"):
        return "hybrid" if getattr(net.patch_embed, "backbone", None) is not None else "vit"
    modules = list(net.modules())
    has_attention = any(
        isinstance(m, nn.MultiheadAttention) or "attention" in type(m).__name__.lower() for m in modules
    )
    if not has_attention:
        return "cnn"
    has_spatial_conv = any(
        isinstance(m, nn.Conv2d) and max(m.kernel_size) > 1 and tuple(m.kernel_size) != tuple(m.stride) for m in modules
    )
    return "hybrid" if has_spatial_conv else "vit"


def _unknown_timm_message(name: str) -> str:
    import timm

    # timm knows ~1,300 architectures: suggest close ones instead of listing all
    arch = name.split(".", 1)[0]
    hint = did_you_mean(arch, timm.list_models(), n=5, cutoff=0.6, prefix="timm:")
    return (
        f"Unknown timm model {name!r}.{hint} See timm.list_models() for all names "
        "(and timm.list_pretrained() for tags)."
    )


def create_timm_model(
    name: str,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike[str] | None = None,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
) -> Classifier:
    """Build ``timm.create_model(name)`` wrapped in a :class:`Classifier` with timm's preprocessing config.

    Args:
        name: timm model name, optionally with a pretrained tag (``resnet50.a1_in1k``).
        pretrained: fetch timm's pretrained weights (needs network or a filled hub cache).
        weights: a local state-dict file (safetensors or torch) to load instead of fetching.
        class_names: one name per output; default ImageNet names for 1000 outputs, else ``class_i``.
        num_classes: outputs; default the pretrained head's. A new head is randomly initialised.

    Returns:
        The classifier (train/eval mode and device as timm left them; :func:`create_model` fixes both).

    Raises:
        ValueError: unknown model name, inconsistent class arguments, a weights file that does not fit.
        RuntimeError: pretrained weights could not be fetched (e.g. offline); says what to do instead.
    """
    import timm
    from timm.data import resolve_model_data_config

    spec = f"timm:{name}"
    if not name or not timm.is_model(name):
        raise ValueError(_unknown_timm_message(name))
    kwargs: dict[str, Any] = {}
    requested: list[str] | None = None
    if class_names is not None or num_classes is not None:
        requested = resolve_class_names(class_names, num_classes, default=(), spec=spec)
        kwargs["num_classes"] = len(requested)
    fetch = pretrained and weights is None
    try:
        net = timm.create_model(name, pretrained=fetch, **kwargs)
    except _FETCH_ERRORS as e:
        if not fetch:
            raise
        raise RuntimeError(
            f"{spec}: could not fetch timm's pretrained weights ({type(e).__name__}: {str(e)[:300]}). "
            "Without network access: pass weights=<local state-dict file>, load a robustlab checkpoint with "
            "create_model('file:<path>'), or pass pretrained=False for random weights"
        ) from e
    if weights is not None:
        load_into(net, read_state_dict(weights), Path(weights))
    outputs = int(getattr(net, "num_classes", 0) or 0)
    if outputs <= 0:
        raise ValueError(f"{spec} has no classifier head (num_classes=0); it is a feature extractor, not a classifier")
    if requested is not None:
        names = requested
    elif outputs == 1000:
        names = list(imagenet_class_names())
    else:
        names = [f"class_{i}" for i in range(outputs)]
    config = resolve_model_data_config(net)
    return Classifier(
        net,
        mean=config["mean"],
        std=config["std"],
        input_size=tuple(config["input_size"]),
        class_names=names,
        name=spec,
        crop_pct=config.get("crop_pct", 1.0),
        interpolation=config.get("interpolation", "bicubic"),
        family=timm_family(net),
    )
