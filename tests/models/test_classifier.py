from __future__ import annotations

import pytest
import torch
from torch import nn

from robustlab.models import Classifier


def make_identity(mean: float = 0.5, std: float = 0.5) -> Classifier:
    return Classifier(nn.Identity(), mean=(mean,) * 3, std=(std,) * 3, input_size=(3, 2, 2), class_names=["a", "b"])


def test_normalisation_lives_inside_the_model() -> None:
    images = torch.tensor([0.0, 0.25, 0.5, 1.0]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    out = make_identity()(images)
    expected = torch.tensor([-1.0, -0.5, 0.0, 1.0]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    assert torch.equal(out, expected)


def test_forward_rejects_integer_pixels_and_wrong_channels() -> None:
    model = make_identity()
    with pytest.raises(ValueError, match="float"):
        model(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(torch.zeros(1, 1, 2, 2))


def test_arch_defaults_to_empty_for_hand_built_classifiers() -> None:
    assert make_identity().arch == ""
