"""A small vision transformer for 32x32 inputs (CIFAR), built from timm's ``VisionTransformer``.

ViT-Tiny width (dim 192, 3 heads) at depth 6 with 4x4 patches: an 8x8 token grid plus a class token. It has no
published weights; it exists so that ViT methods (AFAT's patch corruptions, attention stability, rollouts) can
be trained and tested at CIFAR scale. Being a timm model it has ``blocks``, ``patch_embed.grid_size`` and
timm's ``Attention`` modules, so :func:`robustlab.models.vit_probe` works on it unchanged.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from robustlab.models._common import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, resolve_class_names
from robustlab.models._weights import load_into, read_state_dict
from robustlab.models._zoo import MODELS
from robustlab.models.classifier import Classifier


@MODELS.register
def cifar_vit_tiny_patch4(
    *,
    pretrained: bool = True,
    weights: str | os.PathLike[str] | None = None,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> Classifier:
    """ViT-Tiny/4 for 32 px (dim 192, depth 6, 3 heads, class token); random init unless weights= is given.

    No pretrained weights exist, so ``pretrained`` alone never loads anything. ``data_dir`` is unused. Other
    arguments, return value and errors: as :func:`robustlab.models.create_model`.
    """
    from timm.models.vision_transformer import VisionTransformer

    spec = "cifar:vit_tiny_patch4"
    names = resolve_class_names(class_names, num_classes, default=CIFAR10_CLASSES, spec=spec)
    net = VisionTransformer(
        img_size=32,
        patch_size=4,
        num_classes=len(names),
        embed_dim=192,
        depth=6,
        num_heads=3,
        mlp_ratio=4.0,
        qkv_bias=True,
        class_token=True,
        global_pool="token",
    )
    if weights is not None:
        load_into(net, read_state_dict(weights), Path(weights))
    elif pretrained:
        warnings.warn(
            f"{spec} has no published pretrained weights; it is randomly initialised. Train it, pass "
            "weights=, or pass pretrained=False to silence this warning",
            stacklevel=3,
        )
    return Classifier(
        net,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        input_size=(3, 32, 32),
        class_names=names,
        name=spec,
        family="vit",
    )
