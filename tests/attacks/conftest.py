from __future__ import annotations

import pytest
import torch
from attacks_helpers import linear_classifier

import robustlab  # noqa: F401  (torchvision import workaround before timm / torchattacks)
from robustlab.models import Classifier, create_model


@pytest.fixture(scope="session")
def resnet20() -> Classifier:
    """cifar:resnet20 with random weights (eval mode, batch norm included)."""
    torch.manual_seed(0)
    return create_model("cifar:resnet20", pretrained=False)


@pytest.fixture
def linear() -> Classifier:
    return linear_classifier()


@pytest.fixture(scope="session")
def vit_tiny() -> Classifier:
    torch.manual_seed(0)
    return create_model("cifar:vit_tiny_patch4", pretrained=False)


@pytest.fixture(scope="session")
def test_vit() -> Classifier:
    torch.manual_seed(0)
    return create_model("timm:test_vit", pretrained=False)
