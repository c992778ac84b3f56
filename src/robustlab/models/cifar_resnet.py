"""The CIFAR ResNets of He et al. 2016 (section 4.2) with option-A shortcuts, as trained by akamaster.

Module names equal the keys of ``akamaster/pytorch_resnet_cifar10`` checkpoints once their ``module.`` prefix
is stripped, so those files load strictly. The parameter-free option-A shortcut is what makes the parameter
counts (0.27M for ResNet-20) match the paper.
"""

from __future__ import annotations

import functools

import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.models._common import IMAGENET_MEAN, IMAGENET_STD
from robustlab.models._zoo import MODELS
from robustlab.models.family import ModelEntry, ModelFamily

WEIGHTS_SUBDIR = "akamaster_resnet_cifar10"


class ShortcutA(nn.Module):
    """Option-A downsampling shortcut: keep every second pixel and zero-pad the new channels.

    Args:
        pad: channels of zeros added on each side of the channel dimension (``planes // 4``).

    Shape:
        ``(N, C, H, W)`` -> ``(N, C + 2 * pad, ceil(H / 2), ceil(W / 2))``.
    """

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))

    def extra_repr(self) -> str:
        return f"pad={self.pad}"


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU.

    Args:
        in_planes: input channels.
        planes: output channels.
        stride: stride of the first convolution; the shortcut downsamples to match.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            # option A of the paper: no parameters; akamaster pads planes // 4 on each side (16 -> 32 -> 64)
            self.shortcut = ShortcutA(planes // 4)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs: stem, three stages of ``n`` blocks (16/32/64 channels), GAP, linear.

    Args:
        num_blocks: blocks per stage (3, 5, 7, 9 for ResNet-20/32/44/56).
        num_classes: outputs of the final linear layer.

    Shape:
        forward: ``(N, 3, H, W)`` normalised images -> ``(N, num_classes)``;
        forward_features: -> ``(N, 64, H / 4, W / 4)``.
    """

    def __init__(self, num_blocks: int, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, 16, num_blocks, stride=1)
        self.layer2 = self._make_layer(16, 32, num_blocks, stride=2)
        self.layer3 = self._make_layer(32, 64, num_blocks, stride=2)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():  # the init of akamaster's training script
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    @staticmethod
    def _make_layer(in_planes: int, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        blocks = [BasicBlock(in_planes, planes, stride)]
        blocks += [BasicBlock(planes, planes, 1) for _ in range(num_blocks - 1)]
        return nn.Sequential(*blocks)

    def forward_features(self, x: Tensor) -> Tensor:
        """The last convolutional feature map (what CAM weighs)."""
        x = F.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward_head(self, features: Tensor) -> Tensor:
        """Global average pooling followed by the linear classifier."""
        return self.linear(features.mean(dim=(2, 3)))

    def get_classifier(self) -> nn.Linear:
        """The linear layer after global average pooling (timm's name for this accessor)."""
        return self.linear

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


AKAMASTER = ModelFamily(
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    input_size=(3, 32, 32),
    classes="cifar10",
    weights_subdir=WEIGHTS_SUBDIR,
    weights_pattern="resnet{variant}-*.th",
    head_prefix="linear.",
)
"""akamaster's CIFAR-10 ResNets (trained with ImageNet mean / std)."""

# clean top-1 reported by the weights' source README, by depth
CLEAN_ACCURACY = {20: "91.7%", 32: "92.6%", 44: "93.1%", 56: "93.4%"}

CIFAR_RESNETS: dict[str, ModelEntry] = {
    f"cifar_resnet{depth}": ModelEntry(
        spec=f"cifar:resnet{depth}",
        family=AKAMASTER,
        make_net=functools.partial(CifarResNet, (depth - 2) // 6),
        description=f"ResNet-{depth} for CIFAR-10 (He et al. 2016, option A; akamaster weights, {clean} clean).",
        variant=str(depth),
    )
    for depth, clean in CLEAN_ACCURACY.items()
}
for _key, _entry in CIFAR_RESNETS.items():
    MODELS.register(_entry, name=_key)
