"""A small CNN for 32-px images: the offline demo's model and a fast model for tests.

Three conv-BN-ReLU stages (16, 32, 64 channels; the last two stride 2), then global average pooling and a linear
layer, so CAM applies. About 0.07 M parameters: it trains on the embedded digits in well under a minute on a CPU.
"""

from __future__ import annotations

from torch import Tensor, nn

from robustlab.models._zoo import MODELS
from robustlab.models.family import ModelEntry, ModelFamily


def _stage(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )  # fmt: skip


class SmallCNN(nn.Module):
    """conv stages 16/32/64 -> global average pool -> linear.

    Shape:
        forward_features: ``(N, 3, H, W)`` -> ``(N, 64, H / 4, W / 4)``.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(_stage(3, 16, 1), _stage(16, 32, 2), _stage(32, 64, 2))
        self.fc = nn.Linear(64, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.fc(features.mean(dim=(2, 3)))

    def get_classifier(self) -> nn.Linear:
        return self.fc

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


# a mid-grey mean and unit-ish std: the demo's digits and CIFAR alike are [0, 1] pixels
DEMO = ModelFamily(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=(3, 32, 32), classes="cifar10")
"""Small models trained by robustlab itself (no published weights: ``pretrained`` alone loads nothing)."""

CIFAR_SMALL_CNN = ModelEntry(
    spec="cifar:small_cnn",
    family=DEMO,
    make_net=SmallCNN,
    description=(
        "Small 3-stage CNN for 32 px (0.07 M params, GAP + linear head); random init unless weights= is given."
    ),
)
MODELS.register(CIFAR_SMALL_CNN, name=CIFAR_SMALL_CNN.key)
