"""The BatchNorm-free CIFAR ResNets of alpha-beta-CROWN (VNN-COMP 2021 "cifar10_resnet": ResNet-2B/4B).

Adversarially trained (L-inf PGD, eps = 2/255) by Wang et al. 2021. Every convolution has a bias, shortcuts
are 1x1 convolutions when the shape changes, and the head flattens the feature map into two linear layers, so
these models have no global-average-pool head (CAM does not apply to them). Key names follow the original
files.
"""

from __future__ import annotations

import functools

import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.models._common import CIFAR10_MEAN, CIFAR10_STD
from robustlab.models._zoo import MODELS
from robustlab.models.family import ModelEntry, ModelFamily

WEIGHTS_SUBDIR = "crown_resnet_cifar10_adv"


class CrownBlock(nn.Module):
    """conv3x3(stride)-ReLU-conv3x3, plus the shortcut, then ReLU; no normalisation layers.

    Args:
        in_planes: input channels.
        planes: output channels.
        stride: stride of the first convolution and of the 1x1 shortcut convolution.
    """

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1)
        # an empty Sequential is the identity; the original code keeps it so the conv is named "shortcut.0"
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride))

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        return F.relu(out + self.shortcut(x))


class CrownResNet(nn.Module):
    """Stem conv (stride 2), one or two stages of two blocks (first stride 2), flatten, linear-ReLU-linear.

    Args:
        in_planes: stem channels (8 for ResNet-2B, 16 for ResNet-4B).
        stages: number of stages (1 for ResNet-2B, 2 for ResNet-4B); stage widths are ``2 * in_planes``.
        num_classes: outputs.
        image_size: input side length; fixes the flattened feature size.

    Shape:
        forward: ``(N, 3, image_size, image_size)`` normalised images -> ``(N, num_classes)``.
    """

    def __init__(self, in_planes: int, stages: int, num_classes: int = 10, image_size: int = 32) -> None:
        super().__init__()
        width = 2 * in_planes
        self.conv1 = nn.Conv2d(3, in_planes, kernel_size=3, stride=2, padding=1)
        self.layer1 = nn.Sequential(CrownBlock(in_planes, width, 2), CrownBlock(width, width, 1))
        self.layer2 = None
        if stages > 1:
            self.layer2 = nn.Sequential(CrownBlock(width, width, 2), CrownBlock(width, width, 1))
        side = image_size // 2 ** (1 + stages)
        self.linear1 = nn.Linear(width * side * side, 100)
        self.linear2 = nn.Linear(100, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """The last convolutional feature map."""
        x = self.layer1(F.relu(self.conv1(x)))
        return self.layer2(x) if self.layer2 is not None else x

    def forward_head(self, features: Tensor) -> Tensor:
        """Flatten, then linear-ReLU-linear (not global average pooling)."""
        return self.linear2(F.relu(self.linear1(features.flatten(1))))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


CROWN = ModelFamily(
    mean=CIFAR10_MEAN,
    std=CIFAR10_STD,
    input_size=(3, 32, 32),
    classes="cifar10",
    weights_subdir=WEIGHTS_SUBDIR,
    weights_pattern="{variant}.pth",
    head_prefix="linear2.",
)
"""alpha-beta-CROWN's PGD-trained CIFAR-10 ResNets."""

# (stem planes, stages) of each variant, and the clean accuracy its source reports
_SHAPES = {"resnet2b": (8, 1), "resnet4b": (16, 2)}
CLEAN_ACCURACY = {"resnet2b": "69%", "resnet4b": "77%"}

CROWN_RESNETS: dict[str, ModelEntry] = {
    f"cifar_{variant}": ModelEntry(
        spec=f"cifar:{variant}",
        family=CROWN,
        make_net=functools.partial(CrownResNet, *_SHAPES[variant]),
        description=(f"ResNet-{variant[-2:].upper()} for CIFAR-10 without BatchNorm, PGD-trained at eps 2/255 "
                     f"(alpha-beta-CROWN; {clean} clean)."),
        variant=variant,
    )
    for variant, clean in CLEAN_ACCURACY.items()
}  # fmt: skip
for _key, _entry in CROWN_RESNETS.items():
    MODELS.register(_entry, name=_key)
