"""Helpers shared by the explain tests (a module, not conftest, so tests can import them by name)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab.models import Classifier

# open_clip has no tiny built-in architecture; the ``tiny_clip`` fixture registers this one (as tests/models does)
TINY_CLIP = "robustlab-test-explain-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def rand_images(n: int, size: int, *, seed: int = 0) -> Tensor:
    """Uniform [0, 1] images from a local generator."""
    return torch.rand((n, 3, size, size), generator=torch.Generator().manual_seed(seed))


def hook_count(module: nn.Module) -> int:
    """Forward (pre-)hooks registered anywhere in ``module``."""
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._forward_hooks_with_kwargs)
        + len(m._forward_pre_hooks_with_kwargs)
        for m in module.modules()
    )


class OneConvNet(nn.Module):
    """A hand-set 1x1 convolution (feature 0 = red, feature 1 = green - blue), then a pooled linear head.

    ``head="avg"`` is global average pooling + linear (CAM applies); ``head="square"`` pools the squared features,
    so Grad-CAM's channel weights depend on the features and CAM is refused.
    """

    def __init__(self, head: str = "avg") -> None:
        super().__init__()
        self.head = head
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        self.fc = nn.Linear(2, 3)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, -1.0]]).view(2, 3, 1, 1))
            self.fc.weight.copy_(torch.tensor([[2.0, -1.0], [0.0, 3.0], [1.0, 1.0]]))
            self.fc.bias.copy_(torch.tensor([0.5, 0.0, -1.0]))

    def forward_features(self, x: Tensor) -> Tensor:
        return self.conv(x)

    def forward_head(self, features: Tensor) -> Tensor:
        pooled = features.mean(dim=(2, 3)) if self.head == "avg" else features.square().mean(dim=(2, 3))
        return self.fc(pooled)

    def get_classifier(self) -> nn.Linear:
        return self.fc

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def one_conv_model(head: str = "avg") -> Classifier:
    """:class:`OneConvNet` as a Classifier whose normalisation is the identity (2 x 2 inputs, 3 classes)."""
    return Classifier(
        OneConvNet(head),
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
        input_size=(3, 2, 2),
        class_names=["a", "b", "c"],
        name="one-conv",
    ).eval()


def hand_image() -> Tensor:
    """red = [[1, 0], [0, 0]], green = [[0, 1], [0, 0]], blue = [[0, 0], [0, 0.5]]: features
    ``[[1, 0], [0, 0]]`` and ``[[0, 1], [0, -0.5]]``."""
    return torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.5]]]])


def small_test_vit(size: int = 64, **kwargs: object) -> Classifier:
    """timm's ``test_vit`` (6 blocks, 2 heads, 16-px patches) at ``size`` px with 10 classes and fused attention on.

    The registered spec ``timm:test_vit`` runs at 160 px (100 patches); 64 px (4x4 patches) keeps the many ViT
    tests fast on a shared 2-core machine. ``kwargs`` go to ``timm.create_model`` (e.g. ``class_token=False``).
    """
    import timm

    net = timm.create_model("test_vit", pretrained=False, img_size=size, num_classes=10, **kwargs)
    for block in net.blocks:
        block.attn.fused_attn = True  # whatever timm's default here, explainers must cope with fused attention
    return Classifier(
        net,
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        input_size=(3, size, size),
        class_names=[f"class_{i}" for i in range(10)],
        name="test_vit@64",
        family="vit",
    ).eval()
