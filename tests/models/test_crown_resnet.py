from __future__ import annotations

import pytest
import torch
from models_helpers import rand_images
from torch import nn

from robustlab.models import create_model
from robustlab.models.crown_resnet import CrownResNet

# key names of alpha-beta-CROWN's resnet2b.pth (shared/data README, section 4)
RESNET2B_KEYS = {
    "conv1.weight", "conv1.bias",
    "layer1.0.conv1.weight", "layer1.0.conv1.bias", "layer1.0.conv2.weight", "layer1.0.conv2.bias",
    "layer1.0.shortcut.0.weight", "layer1.0.shortcut.0.bias",
    "layer1.1.conv1.weight", "layer1.1.conv1.bias", "layer1.1.conv2.weight", "layer1.1.conv2.bias",
    "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
}  # fmt: skip


def test_resnet2b_keys_match_the_original_files() -> None:
    assert set(CrownResNet(8, 1).state_dict()) == RESNET2B_KEYS


@pytest.mark.parametrize(
    ("spec", "feature_shape", "flat", "params"),
    [("cifar:resnet2b", (16, 8, 8), 1024, 112_006), ("cifar:resnet4b", (32, 4, 4), 512, 123_734)],
)
def test_flatten_head_sizes(spec: str, feature_shape: tuple[int, ...], flat: int, params: int) -> None:
    model = create_model(spec, pretrained=False)
    net = model.net
    assert net.linear1.in_features == flat
    assert sum(p.numel() for p in net.parameters()) == params
    with torch.no_grad():
        assert net.forward_features(rand_images(2, 32)).shape == (2, *feature_shape)
        assert model(rand_images(2, 32)).shape == (2, 10)


def test_no_batchnorm_and_every_conv_has_a_bias() -> None:
    net = create_model("cifar:resnet4b", pretrained=False).net
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.bias is not None for c in convs)


def test_shortcut_is_identity_unless_the_shape_changes() -> None:
    net = CrownResNet(16, 2)
    assert len(net.layer1[0].shortcut) == 1 and net.layer1[0].shortcut[0].stride == (2, 2)
    assert len(net.layer1[1].shortcut) == 0
    x = rand_images(1, 8)[:, :1].expand(1, 32, 8, 8)
    block = net.layer1[1]
    with torch.no_grad():
        manual = torch.relu(block.conv2(torch.relu(block.conv1(x))) + x)
        assert torch.equal(block(x), manual)


def test_cifar_normalisation() -> None:
    model = create_model("cifar:resnet2b", pretrained=False)
    torch.testing.assert_close(model.mean.flatten(), torch.tensor([0.4914, 0.4822, 0.4465]))
    torch.testing.assert_close(model.std.flatten(), torch.tensor([0.2471, 0.2435, 0.2616]))


def test_missing_crown_weights(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("ROBUSTLAB_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="crown_resnet_cifar10_adv"):
        create_model("cifar:resnet4b")
