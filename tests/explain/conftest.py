from __future__ import annotations

import json

import pytest
from explain_helpers import TINY_CLIP, TINY_CLIP_CONFIG, small_test_vit

import robustlab  # noqa: F401  (torchvision import workaround before open_clip / timm)
from robustlab.models import CIFAR10_CLASSES, Classifier, create_model


@pytest.fixture(scope="module")
def vit() -> Classifier:
    """timm's test_vit at 64 px (6 blocks, 2 heads, 4x4 patches), random weights, fused attention on."""
    return small_test_vit(64)


@pytest.fixture(scope="module")
def vit160() -> Classifier:
    """``create_model("timm:test_vit")`` as registered (160 px, 10x10 patches), fused attention on."""
    model = create_model("timm:test_vit", pretrained=False)
    for block in model.net.blocks:
        block.attn.fused_attn = True
    return model


@pytest.fixture(scope="module")
def cnn() -> Classifier:
    return create_model("cifar:small_cnn", pretrained=False)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Classifier:
    """A 2-layer open_clip ViT (4x4 patches at 32 px) as a zero-shot CIFAR-10 classifier, random weights."""
    open_clip = pytest.importorskip("open_clip")
    path = tmp_path_factory.mktemp("open_clip_configs") / f"{TINY_CLIP}.json"
    path.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(path)
    return create_model(f"openclip:{TINY_CLIP}", pretrained=False, class_names=CIFAR10_CLASSES)
