from __future__ import annotations

import pytest
import torch
from models_helpers import rand_images
from torch import nn

from robustlab.models import CIFAR10_CLASSES, create_model
from robustlab.models.cifar_resnet import BasicBlock, CifarResNet, ShortcutA


def test_option_a_shortcut_subsamples_and_zero_pads_channels() -> None:
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4)
    out = ShortcutA(pad=1)(x)
    assert out.shape == (1, 4, 2, 2)
    assert torch.equal(out[:, 1:3], x[:, :, ::2, ::2])
    assert torch.count_nonzero(out[:, 0]) == 0 and torch.count_nonzero(out[:, 3]) == 0


def test_downsampling_block_has_a_parameter_free_shortcut() -> None:
    down, same = BasicBlock(16, 32, stride=2), BasicBlock(16, 16, stride=1)
    assert isinstance(down.shortcut, ShortcutA) and down.shortcut.pad == 8
    assert not list(down.shortcut.parameters())
    assert isinstance(same.shortcut, nn.Identity)
    assert down(rand_images(2, 8)[:, :1].expand(2, 16, 8, 8)).shape == (2, 32, 4, 4)


@pytest.mark.parametrize(("depth", "params"), [(20, 269_722), (32, 464_154), (44, 658_586), (56, 853_018)])
def test_parameter_counts_match_the_paper(depth: int, params: int) -> None:
    # He et al. 2016, table 6: 0.27M / 0.46M / 0.66M / 0.85M; option A adds no shortcut parameters
    net = CifarResNet((depth - 2) // 6)
    assert sum(p.numel() for p in net.parameters()) == params


def test_module_names_follow_akamaster_checkpoints() -> None:
    keys = set(CifarResNet(3).state_dict())
    # names in akamaster's files after stripping "module." (BatchNorm's num_batches_tracked is not in them)
    for key in [
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.conv1.weight",
        "layer2.2.bn2.bias",
        "layer3.0.conv2.weight",
        "linear.weight",
        "linear.bias",
    ]:
        assert key in keys
    assert not any("shortcut" in k for k in keys)


def test_forward_is_gap_linear_on_the_last_feature_map() -> None:
    model = create_model("cifar:resnet20", pretrained=False)
    images = rand_images(3, 32)
    with torch.no_grad():
        features = model.net.forward_features(model.normalize(images))
        assert features.shape == (3, 64, 8, 8)
        manual = features.mean(dim=(2, 3)) @ model.net.linear.weight.T + model.net.linear.bias
        torch.testing.assert_close(model(images), manual)


def test_defaults_are_cifar10_with_imagenet_normalisation() -> None:
    model = create_model("cifar:resnet32", pretrained=False)
    assert model.class_names == list(CIFAR10_CLASSES)
    assert model.input_size == (3, 32, 32)
    torch.testing.assert_close(model.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    torch.testing.assert_close(model.std.flatten(), torch.tensor([0.229, 0.224, 0.225]))


def test_num_classes_resizes_the_head() -> None:
    model = create_model("cifar:resnet20", pretrained=False, num_classes=100)
    assert model.net.linear.out_features == 100
    assert model.class_names[:2] == ["class_0", "class_1"]


def test_missing_weights_say_where_and_how_to_fix(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("ROBUSTLAB_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="ROBUSTLAB_DATA") as info:
        create_model("cifar:resnet20")
    assert "weights=" in str(info.value) and "pretrained=False" in str(info.value)
    with pytest.raises(FileNotFoundError) as info:
        create_model("cifar:resnet44", data_dir=tmp_path)
    assert str(tmp_path / "weights" / "akamaster_resnet_cifar10" / "resnet44-*.th") in str(info.value)


def test_weights_in_akamaster_format_load(tmp_path) -> None:
    source = create_model("cifar:resnet20", pretrained=False)
    path = tmp_path / "resnet20-custom.th"
    # akamaster's layout: DataParallel "module." prefix inside {"state_dict", "best_prec1"}
    state = {f"module.{k}": v for k, v in source.net.state_dict().items() if "num_batches" not in k}
    torch.save({"state_dict": state, "best_prec1": 91.0}, path)
    loaded = create_model("cifar:resnet20", weights=path)
    images = rand_images(2, 32)
    with torch.no_grad():
        assert torch.equal(loaded(images), source(images))


def test_mismatched_weights_name_the_file_and_keys(tmp_path) -> None:
    path = tmp_path / "resnet32.pt"
    torch.save(CifarResNet(5).state_dict(), path)
    with pytest.raises(ValueError, match="unexpected keys: layer1.3") as info:
        create_model("cifar:resnet20", weights=path)
    assert str(path) in str(info.value)
    torch.save(CifarResNet(3, num_classes=100).state_dict(), path)
    with pytest.raises(ValueError, match=r"wrong shape.*linear.weight"):
        create_model("cifar:resnet20", weights=path)
