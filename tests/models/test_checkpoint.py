from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from models_helpers import rand_images
from safetensors.torch import save_file
from torch import nn

from robustlab.models import Classifier, create_model, save_checkpoint


def trained_like(spec: str, **kwargs: object) -> Classifier:
    """A model whose every tensor (BatchNorm statistics included) differs from a fresh build's."""
    model = create_model(spec, pretrained=False, **kwargs)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for tensor in model.net.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.1 + 0.5)
    return model


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_round_trip_gives_identical_logits(tmp_path: Path, suffix: str) -> None:
    model = trained_like("cifar:resnet20", class_names=["a", "b", "c"])
    model.mean.fill_(0.25)  # a custom pixel contract must travel with the weights
    path = save_checkpoint(model, tmp_path / f"ckpt{suffix}")
    loaded = create_model(f"file:{path}")
    images = rand_images(4, 32)
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))
    assert loaded.class_names == ["a", "b", "c"]
    assert loaded.arch == "cifar:resnet20" and loaded.name == f"file:{path}"
    assert torch.equal(loaded.mean, model.mean) and not loaded.training


@pytest.mark.parametrize("spec", ["timm:test_vit", "cifar:resnet4b", "cifar:vit_tiny_patch4"])
def test_round_trip_other_families(tmp_path: Path, spec: str) -> None:
    model = trained_like(spec)
    path = save_checkpoint(model, tmp_path / "ckpt.safetensors")
    loaded = create_model(f"file:{path}")
    images = rand_images(2, model.input_size[1:])
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))
    assert loaded.data_config == model.data_config and loaded.family == model.family


def test_round_trip_zero_shot_clip(tmp_path: Path, tiny_clip_arch: str) -> None:
    model = trained_like(f"openclip:{tiny_clip_arch}", class_names=["cat", "dog"])
    loaded = create_model(f"file:{save_checkpoint(model, tmp_path / 'clip.pt')}")
    images = rand_images(2, 32)
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))


def test_saving_needs_an_architecture(tmp_path: Path) -> None:
    model = Classifier(nn.Flatten(), mean=(0.0,), std=(1.0,), input_size=(1, 2, 2), class_names=list("abcd"))
    with pytest.raises(ValueError, match="arch="):
        save_checkpoint(model, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="Classifier"):
        save_checkpoint(nn.Linear(2, 2), tmp_path / "x.pt")  # type: ignore[arg-type]


def test_corrupt_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.pt"
    path.write_bytes(os.urandom(256))
    with pytest.raises(ValueError, match="corrupt.pt") as err:
        create_model(f"file:{path}")
    assert "refusing" not in str(err.value)  # damaged, not a pickled object
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(ValueError, match=r"cannot read .*notes.pt as a torch file .*: Unsupported operand"):
        create_model(f"file:{text}")
    truncated = tmp_path / "trunc.safetensors"
    save_checkpoint(create_model("cifar:resnet20", pretrained=False), truncated)
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(ValueError, match="trunc.safetensors"):
        create_model(f"file:{truncated}")


class Payload:
    """Unpickling this would create a directory; a safe loader must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (str(self.marker),)


def test_pickled_objects_are_refused_unexecuted(tmp_path: Path) -> None:
    marker = tmp_path / "was_executed"
    path = tmp_path / "evil.pt"
    torch.save({"arch": "cifar:resnet20", "state_dict": {}, "extra": Payload(marker)}, path)
    with pytest.raises(ValueError, match="refusing to load .*evil.pt"):
        create_model(f"file:{path}")
    with pytest.raises(ValueError, match="refusing"):
        create_model("cifar:resnet20", weights=path)
    assert not marker.exists()


def test_plain_state_dict_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save(create_model("cifar:resnet20", pretrained=False).net.state_dict(), path)
    with pytest.raises(ValueError, match=r"not a robustlab checkpoint.*create_model\(<architecture spec>"):
        create_model(f"file:{path}")
    tensors = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(tensors))
    with pytest.raises(ValueError, match="no 'robustlab' metadata"):
        create_model(f"file:{tensors}")


@pytest.mark.parametrize(
    ("meta", "fragment"),
    [
        ({"arch": "file:other.pt"}, "'arch' must be a model spec"),
        ({"arch": "cifar:resnet99"}, "Did you mean"),
        ({"arch": "cifar:resnet20", "version": 99}, "version 99"),
        ({"arch": "cifar:resnet20", "format": "something-else"}, "unknown format"),
    ],
)
def test_bad_metadata(tmp_path: Path, meta: dict, fragment: str) -> None:
    path = tmp_path / "bad.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"robustlab": json.dumps(meta)})
    with pytest.raises(ValueError, match=fragment):
        create_model(f"file:{path}")


def test_weights_that_do_not_fit_the_recorded_arch(tmp_path: Path) -> None:
    path = tmp_path / "mismatch.pt"
    save_checkpoint(create_model("cifar:resnet32", pretrained=False), path, arch="cifar:resnet20")
    with pytest.raises(ValueError, match="mismatch.pt.*unexpected keys"):
        create_model(f"file:{path}")


def test_file_scheme_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        create_model(f"file:{tmp_path / 'missing.pt'}")
    path = save_checkpoint(create_model("cifar:resnet20", pretrained=False), tmp_path / "ok.pt")
    with pytest.raises(ValueError, match="already names the weights"):
        create_model(f"file:{path}", weights=path)
    with pytest.raises(ValueError, match="10 outputs"):
        create_model(f"file:{path}", num_classes=3)
