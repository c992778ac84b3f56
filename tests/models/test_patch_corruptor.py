"""AFAT's patch-corruption model C and its file (moved from tests/methods/test_afat.py with the code)."""

from __future__ import annotations

import pytest
import torch

from robustlab.models import create_model
from robustlab.models.classifier import Classifier
from robustlab.models.patch_corruptor import PatchCorruptor, load_corruptor, patch_geometry, save_corruptor

CLASSES = [f"class_{i}" for i in range(10)]


def test_vit_64(seed: int = 0) -> Classifier:
    """timm ``test_vit`` (16-px patches) at 64 px: a 4 x 4 grid, 16 patches."""
    import timm

    torch.manual_seed(seed)  # test-only: timm constructors take no generator
    net = timm.create_model("test_vit", pretrained=False, img_size=64, num_classes=10)
    return Classifier(net, mean=(0.5,) * 3, std=(0.5,) * 3, input_size=(3, 64, 64), class_names=CLASSES,
                      name="test_vit@64", family="vit").eval()  # fmt: skip


test_vit_64.__test__ = False  # a helper, not a test


def vit32(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)  # test-only
    return create_model("cifar:vit_tiny_patch4", pretrained=False)


def test_corruptor_is_built_from_the_models_grid_without_global_rng() -> None:
    assert patch_geometry(vit32()) == (4, (8, 8))
    assert patch_geometry(test_vit_64()) == (16, (4, 4))
    state = torch.random.get_rng_state()
    a = PatchCorruptor(4, (8, 8), generator=torch.Generator().manual_seed(3))
    b = PatchCorruptor(4, (8, 8), generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert a.conv.bias is None and a.linear.bias is None and a.linear.weight.shape == (64, 64)
    assert a(torch.rand(2, 3, 32, 32)).shape == (2, 64)


def test_corruptor_round_trips_through_a_file(tmp_path) -> None:
    c = PatchCorruptor(4, (8, 8), generator=torch.Generator().manual_seed(0))
    save_corruptor(c, tmp_path / "c.pt")
    back = load_corruptor(tmp_path / "c.pt")
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(c(x), back(x))
    with pytest.raises(FileNotFoundError, match="corruptor"):
        load_corruptor(tmp_path / "missing.pt")
