"""Published clean accuracies reproduced through the public API (data README, issue 2)."""

from __future__ import annotations

import pytest

from robustlab.data import Preprocess, load_dataset
from robustlab.engine.accuracy import evaluate_accuracy
from robustlab.models import create_model

pytestmark = pytest.mark.realdata


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("cifar:resnet20", 91.63),
        ("cifar:resnet32", 93.03),
        ("cifar:resnet44", 93.45),
        ("cifar:resnet56", 92.60),
        ("cifar:resnet2b", 69.53),
        ("cifar:resnet4b", 76.82),
    ],
)
def test_cifar_checkpoints_on_exact_932(data_root, spec: str, expected: float) -> None:
    data = load_dataset("cifar10_exact", data_dir=data_root)
    model = create_model(spec, data_dir=data_root)
    correct, count = evaluate_accuracy(model, data, batch_size=500)
    assert count == 932
    assert abs(100 * correct / count - expected) <= 0.2


def test_resnet20_on_jpeg_test_set(data_root) -> None:
    data = load_dataset("cifar10", data_dir=data_root)
    assert len(data) == 10_000
    model = create_model("cifar:resnet20", data_dir=data_root)
    correct, count = evaluate_accuracy(model, data, batch_size=500)
    assert count == 10_000
    assert abs(100 * correct / count - 81.03) <= 0.2


def test_efficientnet_lite0_on_imagenet_sample(data_root) -> None:
    pytest.importorskip("efficientnet_lite_pytorch")
    model = create_model("efficientnet_lite0")
    # resize 256 / centre crop 224, taken from the model's own config
    preprocess = Preprocess.from_config(model.data_config)
    assert preprocess.describe()["crop"] in (224, [224, 224], (224, 224))
    data = load_dataset("imagenet_sample", data_dir=data_root, preprocess=preprocess)
    assert len(data) == 1000
    correct, count = evaluate_accuracy(model, data, batch_size=50)
    assert abs(100 * correct / count - 88.1) <= 0.2
