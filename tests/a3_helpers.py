"""A tiny classifier and images shared by the A3 tests (tests/models/test_a3_module.py, tests/methods/test_a3.py)."""

from __future__ import annotations

import torch
from torch import nn

from robustlab.models import Classifier
from robustlab.models.a3_module import get_attachment


class TinyNet(nn.Module):
    """Two ReLU stages (the first with BatchNorm, so there are running statistics to disturb), GAP, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1, stride=2), nn.ReLU())
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.stage2(self.stage1(x)).mean(dim=(2, 3)))


def tiny(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    return Classifier(TinyNet(), mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(3, 8, 8),
                      class_names=list("abcd"), name="tiny").eval()  # fmt: skip


def images(n: int = 6, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def switch_some_channels_on(model: nn.Module) -> None:
    with torch.no_grad():
        for block in get_attachment(model).modules_in_order():
            block.logits.copy_(torch.linspace(-2, 2, block.channels))
