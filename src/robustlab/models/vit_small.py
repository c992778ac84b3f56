"""A small vision transformer for 32x32 inputs (CIFAR), built from timm's ``VisionTransformer``.

ViT-Tiny width (dim 192, 3 heads) at depth 6 with 4x4 patches: an 8x8 token grid plus a class token. It has no
published weights; it exists so that ViT methods (AFAT's patch corruptions, attention stability, rollouts) can
be trained and tested at CIFAR scale. Being a timm model it has ``blocks``, ``patch_embed.grid_size`` and
timm's ``Attention`` modules, so :func:`robustlab.models.vit_probe` works on it unchanged.
"""

from __future__ import annotations

from torch import nn

from robustlab.models._common import CIFAR10_MEAN, CIFAR10_STD
from robustlab.models._zoo import MODELS
from robustlab.models.family import ModelEntry, ModelFamily


def vit_tiny_patch4(num_classes: int) -> nn.Module:
    """timm's ``VisionTransformer`` at ViT-Tiny width, depth 6, 4 px patches on 32 px images, random init."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        img_size=32,
        patch_size=4,
        num_classes=num_classes,
        embed_dim=192,
        depth=6,
        num_heads=3,
        mlp_ratio=4.0,
        qkv_bias=True,
        class_token=True,
        global_pool="token",
    )


CIFAR_VIT = ModelFamily(
    mean=CIFAR10_MEAN, std=CIFAR10_STD, input_size=(3, 32, 32), classes="cifar10", kind="vit",
    warn_without_weights=True,
)  # fmt: skip
"""Vision transformers for CIFAR-10 without published weights (``pretrained=True`` warns and initialises)."""

CIFAR_VIT_TINY_PATCH4 = ModelEntry(
    spec="cifar:vit_tiny_patch4",
    family=CIFAR_VIT,
    make_net=vit_tiny_patch4,
    description="ViT-Tiny/4 for 32 px (dim 192, depth 6, 3 heads, class token); random init unless weights= is given.",
)
MODELS.register(CIFAR_VIT_TINY_PATCH4, name=CIFAR_VIT_TINY_PATCH4.key)
