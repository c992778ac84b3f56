"""Your own network in robustlab: wrap_model, create_custom_model / create_model for file and module specs, and
the one-time warning when a plain module meets robustlab's [0, 1] pixels."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from robustlab.attacks import pgd
from robustlab.models import Classifier, create_model, is_user_model, wrap_model


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))


def test_wrap_model_normalises_inside_and_reads_the_class_count() -> None:
    net = _net()
    model = wrap_model(net, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5), input_size=4)
    x = torch.rand(3, 3, 4, 4)
    mean, std = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1), torch.tensor([0.2, 0.25, 0.5]).view(1, 3, 1, 1)
    assert torch.allclose(model(x), net((x - mean) / std))
    assert isinstance(model, Classifier) and model.num_classes == 5 and model.input_size == (3, 4, 4)
    assert not model.training
    with pytest.raises(ValueError, match="5 outputs but 3 classes"):
        wrap_model(_net(), mean=(0,) * 3, std=(1,) * 3, input_size=4, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="already a robustlab Classifier"):
        wrap_model(model, mean=(0,) * 3, std=(1,) * 3, input_size=4)


def test_a_plain_module_given_to_an_attack_warns_once_with_the_fix() -> None:
    class PlainNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = _net()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    net, x = PlainNet().eval(), torch.rand(2, 3, 4, 4)
    y = torch.tensor([0, 1])
    with pytest.warns(UserWarning, match=r"plain PlainNet.*robustlab\.models\.wrap_model\(net, mean="):
        pgd(net, x, y, steps=1, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pgd(net, x, y, steps=1, generator=torch.Generator().manual_seed(0))  # once per network class
        pgd(wrap_model(PlainNet(), mean=(0,) * 3, std=(1,) * 3, input_size=4), x, y, steps=1,
            generator=torch.Generator().manual_seed(0))  # fmt: skip


def test_create_model_builds_a_module_factory_spec(tmp_path, monkeypatch) -> None:
    (tmp_path / "my_zoo.py").write_text(
        "from torch import nn\n"
        "def build(num_classes=7):\n"
        "    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, num_classes))\n"
        "    net.pretrained_cfg = {'input_size': (3, 4, 4)}  # timm's way to carry preprocessing facts\n"
        "    return net\n"
        "def plain():\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert is_user_model("my_zoo:build") and not is_user_model("cifar:resnet20") and not is_user_model("timm:x")
    with pytest.warns(UserWarning, match="unnormalised"):
        model = create_model("my_zoo:build", num_classes=3)
    assert model.num_classes == 3 and model.name == "my_zoo:build" and model.arch == "my_zoo:build"
    assert model.input_size == (3, 4, 4)
    with pytest.raises(ValueError, match=r"a forward on a \(3, 224, 224\) image failed.*--input-size"):
        create_model(f"{tmp_path / 'my_zoo.py'}:plain")
    with pytest.raises(ValueError, match="Unknown model 'nosuchmodule:build'"):
        create_model("nosuchmodule:build")


def test_a_plain_module_given_to_evaluate_warns_once_with_the_fix() -> None:
    from robustlab.data import ArrayDataset
    from robustlab.engine import evaluate

    class PlainForEval(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3))

    data = ArrayDataset(torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0]), name="tiny", class_names=["r", "g", "b"])
    with pytest.warns(UserWarning, match=r"evaluate got a plain PlainForEval.*wrap_model"):
        evaluate(PlainForEval(), data, "clean")
