from __future__ import annotations

import warnings

import pytest
import torch
from models_helpers import rand_images

from robustlab.models import MODELS, Classifier, create_model, list_models
from robustlab.models.family import ModelEntry

BUILT_IN = [
    "cifar:resnet20",
    "cifar:resnet32",
    "cifar:resnet44",
    "cifar:resnet56",
    "cifar:resnet2b",
    "cifar:resnet4b",
    "cifar:vit_tiny_patch4",
    "efficientnet_lite0",
]


def test_registry_keys_are_function_names_or_table_keys() -> None:
    assert len(MODELS) > 0
    for key in MODELS:
        builder = MODELS.get(key)
        # a table entry (ModelEntry) under its own key, or a registered function under its name
        assert (builder.key if isinstance(builder, ModelEntry) else builder.__name__) == key


def test_list_models_covers_every_spec_with_a_description() -> None:
    rows = dict(list_models())
    for spec in [*BUILT_IN, "timm:<name>[.<tag>]", "openclip:<arch>/<tag>", "file:<path>"]:
        assert spec in rows and rows[spec].strip(), spec


@pytest.mark.parametrize("spec", ["cifar:resnet20", "cifar:resnet2b", "cifar:vit_tiny_patch4", "timm:test_resnet"])
def test_create_model_returns_eval_mode_classifier(spec: str) -> None:
    model = create_model(spec, pretrained=False)
    assert isinstance(model, Classifier)
    assert not any(m.training for m in model.modules())
    assert model.name == spec and model.arch == spec
    with torch.no_grad():
        logits = model(rand_images(2, model.input_size[1:]))
    assert logits.shape == (2, model.num_classes)


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"), "meta"])
def test_device_argument_moves_parameters_and_buffers(device: str | torch.device) -> None:
    model = create_model("cifar:resnet20", pretrained=False, device=device)
    expected = torch.device(device).type
    assert model.device.type == expected
    assert all(t.device.type == expected for t in [*model.parameters(), *model.buffers()])


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("cifar:resnet21", "'cifar:resnet20'"),
        ("cifr:resnet20", "Known schemes"),
        ("efficientnet_lite9", "'efficientnet_lite0'"),
        ("resnet20", "Did you mean"),
        ("timm:", "names no model"),
        ("", "non-empty string"),
    ],
)
def test_unknown_specs_get_close_matches(spec: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(")):
        create_model(spec, pretrained=False)


def test_spec_must_be_a_string() -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        create_model(None, pretrained=False)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"num_classes": 0}, "positive integer"),
        ({"num_classes": 3, "class_names": ["a", "b"]}, "num_classes=3 but 2 class_names"),
        ({"class_names": []}, "must not be empty"),
        ({"class_names": "cat"}, "sequence of names"),
    ],
)
def test_class_arguments_are_validated(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        create_model("cifar:resnet20", pretrained=False, **kwargs)


def test_class_names_set_the_head() -> None:
    model = create_model("cifar:resnet56", pretrained=False, class_names=["cat", "dog"])
    assert model.class_names == ["cat", "dog"] and model.net.linear.out_features == 2


def test_missing_weights_file() -> None:
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        create_model("cifar:resnet20", weights="/nonexistent/nope.pt")


def test_vit_tiny_structure() -> None:
    net = create_model("cifar:vit_tiny_patch4", pretrained=False).net
    assert tuple(net.patch_embed.grid_size) == (8, 8)
    assert net.embed_dim == 192 and len(net.blocks) == 6 and net.blocks[0].attn.num_heads == 3
    assert net.num_prefix_tokens == 1


def test_vit_tiny_warns_that_it_has_no_pretrained_weights() -> None:
    with pytest.warns(UserWarning, match="no published pretrained weights"):
        create_model("cifar:vit_tiny_patch4")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_model("cifar:vit_tiny_patch4", pretrained=False)


def _state(model: torch.nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


@pytest.mark.parametrize("spec", ["cifar:small_cnn", "timm:test_resnet"])
def test_seed_makes_random_weights_reproducible_and_leaves_global_rng_alone(spec: str) -> None:
    torch.manual_seed(1)
    a = create_model(spec, pretrained=False, num_classes=10, seed=0)
    after_a = torch.rand(3)  # what the global generator gives next, seeded 1 and untouched by the seeded build
    torch.manual_seed(2)
    b = create_model(spec, pretrained=False, num_classes=10, seed=0)
    torch.manual_seed(1)
    assert torch.equal(after_a, torch.rand(3))
    c = create_model(spec, pretrained=False, num_classes=10, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(_state(a), _state(b), strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(_state(a), _state(c), strict=True))


@pytest.mark.parametrize("seed", [1.5, "0", True])
def test_seed_must_be_an_integer(seed: object) -> None:
    with pytest.raises(ValueError, match="seed must be an integer"):
        create_model("cifar:small_cnn", pretrained=False, seed=seed)
