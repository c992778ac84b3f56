"""A classifier with hand-set weights and constant-colour images, so accuracies are known exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustlab.data._base import ArrayDataset
from robustlab.models.classifier import Classifier

N = 37


def red_blue_values(n: int = N) -> tuple[list[float], list[float], list[int]]:
    """Per-image red level, blue level and label; no ties between red and blue."""
    reds = [((i * 3) % 11 + 0.5) / 12 for i in range(n)]
    blues = [((i * 7) % 13 + 0.5) / 14 for i in range(n)]
    labels = [i % 2 for i in range(n)]
    assert all(r != b for r, b in zip(reds, blues, strict=True))
    return reds, blues, labels


@pytest.fixture
def colour_dataset() -> ArrayDataset:
    reds, blues, labels = red_blue_values()
    images = torch.full((N, 3, 8, 8), 0.5)
    images[:, 0] = torch.tensor(reds).view(-1, 1, 1)
    images[:, 2] = torch.tensor(blues).view(-1, 1, 1)
    return ArrayDataset(images, labels, class_names=["red", "blue"], name="constant_colours")


@pytest.fixture
def expected_predictions() -> list[int]:
    """What the hand-set model must predict: red (0) where red > blue, else blue (1)."""
    reds, blues, _ = red_blue_values()
    return [0 if r > b else 1 for r, b in zip(reds, blues, strict=True)]


@pytest.fixture
def red_vs_blue_model() -> Classifier:
    """Logits (R - B, B - R) of the mean colour: predicts the dominant of red and blue."""
    linear = nn.Linear(3, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 0.0, -1.0], [-1.0, 0.0, 1.0]]))
        linear.bias.zero_()
    net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear)
    model = Classifier(net, mean=(0.0,) * 3, std=(1.0,) * 3, input_size=(3, 8, 8), class_names=["red", "blue"])
    return model.eval()


@pytest.fixture
def colour_values() -> tuple[list[float], list[float], list[int]]:
    """The red levels, blue levels and labels of ``colour_dataset``."""
    return red_blue_values()
