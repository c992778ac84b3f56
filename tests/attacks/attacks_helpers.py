"""Helpers shared by the attack tests (a uniquely named module: every test folder has its own conftest)."""

from __future__ import annotations

import torch
from torch import nn

from robustlab.models import Classifier


def linear_classifier(seed: int = 0, size: int = 8, classes: int = 10) -> Classifier:
    """A linear model on 3 x size x size pixels: fast, smooth, and easy to push to any class."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, classes))
    return Classifier(
        net,
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        input_size=(3, size, size),
        class_names=[str(k) for k in range(classes)],
        name="linear",
    ).eval()


def images(n: int = 8, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
