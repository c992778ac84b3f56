from __future__ import annotations

import pytest
import timm
import torch
from models_helpers import rand_images
from safetensors.torch import save_file

from robustlab.models import create_model
from robustlab.models.timm_models import timm_family


def test_data_config_comes_from_timm() -> None:
    model = create_model("timm:test_resnet", pretrained=False)
    expected = timm.data.resolve_model_data_config(model.net)
    config = model.data_config
    assert config["input_size"] == tuple(expected["input_size"])
    assert config["crop_pct"] == expected["crop_pct"]
    assert config["interpolation"] == expected["interpolation"]
    torch.testing.assert_close(torch.tensor(config["mean"]), torch.tensor(expected["mean"]))
    torch.testing.assert_close(torch.tensor(config["std"]), torch.tensor(expected["std"]))


def test_imagenet_class_names_for_1000_outputs() -> None:
    model = create_model("timm:test_resnet", pretrained=False)
    assert model.num_classes == 1000
    assert model.class_names[0] == "tench" and model.class_names[1] == "goldfish"


def test_new_head_for_other_class_counts() -> None:
    model = create_model("timm:test_vit", pretrained=False, class_names=["a", "b", "c"])
    assert model.class_names == ["a", "b", "c"]
    with torch.no_grad():
        assert model(rand_images(1, 160)).shape == (1, 3)
    assert create_model("timm:test_resnet", pretrained=False, num_classes=5).class_names[-1] == "class_4"


@pytest.mark.parametrize(("name", "family"), [("test_resnet", "cnn"), ("test_vit", "vit"), ("test_coatnet", "hybrid")])
def test_family(name: str, family: str) -> None:
    assert timm_family(timm.create_model(name, pretrained=False)) == family


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(ValueError, match="'timm:resnet50'"):
        create_model("timm:resnet5O", pretrained=False)


def test_unfetchable_pretrained_weights_explain_the_alternatives(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("no network")

    monkeypatch.setattr(timm.models._builder, "load_pretrained", offline)
    with pytest.raises(RuntimeError, match="no network") as info:
        create_model("timm:test_resnet", pretrained=True)
    message = str(info.value)
    assert "weights=" in message and "file:" in message and "pretrained=False" in message


def test_local_weights_replace_the_download(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise AssertionError("must not fetch when weights= is given")

    monkeypatch.setattr(timm.models._builder, "load_pretrained", offline)
    source = create_model("timm:test_resnet", pretrained=False)
    path = tmp_path / "test_resnet.safetensors"
    save_file({k: v.contiguous() for k, v in source.net.state_dict().items()}, str(path))
    loaded = create_model("timm:test_resnet", weights=path)
    images = rand_images(2, 64)
    with torch.no_grad():
        assert torch.equal(loaded(images), source(images))
