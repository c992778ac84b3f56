from __future__ import annotations

import pytest
import torch
from explain_helpers import rand_images

from robustlab.explain import (
    EXPLAINERS,
    attention_rollout,
    cam,
    explain,
    grad_cam,
    list_explainers,
    normalize_maps,
    token_gradient_rollout,
)
from robustlab.models import Classifier

CNN_METHODS = ("cam", "grad_cam")
VIT_METHODS = ("attention_rollout", "gradient_rollout", "token_gradient_rollout")


def test_registry_names_are_the_function_names() -> None:
    assert list_explainers() == sorted(CNN_METHODS + VIT_METHODS)
    assert set(EXPLAINERS.names()) == set(CNN_METHODS + VIT_METHODS)


@pytest.mark.parametrize("method", CNN_METHODS + VIT_METHODS)
def test_uniform_call_gives_normalised_image_sized_maps(method: str, cnn: Classifier, vit: Classifier) -> None:
    model, size = (cnn, 32) if method in CNN_METHODS else (vit, 64)
    images = rand_images(2, size)
    maps = EXPLAINERS.get(method)(model, images, labels=torch.tensor([1, 2]))
    assert maps.shape == (2, 1, size, size) and not maps.requires_grad
    assert torch.allclose(maps.flatten(1).amin(1), torch.zeros(2))
    assert torch.allclose(maps.flatten(1).amax(1), torch.ones(2))
    torch.testing.assert_close(explain(model, images, method, labels=torch.tensor([1, 2])), maps)


def test_uniform_maps_equal_the_functions(cnn: Classifier, vit: Classifier) -> None:
    images, labels = rand_images(2, 32), torch.tensor([4, 0])
    torch.testing.assert_close(explain(cnn, images, "cam", labels=labels), cam(cnn, images, labels=labels).maps)
    torch.testing.assert_close(explain(cnn, images, "grad_cam"), grad_cam(cnn, images).maps)
    images = rand_images(2, 64)
    torch.testing.assert_close(
        explain(vit, images, "attention_rollout", head_fusion="max", discard_ratio=0.5),
        normalize_maps(attention_rollout(vit, images, head_fusion="max", discard_ratio=0.5), size=(64, 64)),
    )
    torch.testing.assert_close(
        explain(vit, images, "token_gradient_rollout", quantile=0.9),
        normalize_maps(token_gradient_rollout(vit, images, quantile=0.9), size=(64, 64)),
    )


def test_unknown_names_and_params(cnn: Classifier, vit: Classifier) -> None:
    with pytest.raises(ValueError, match="Did you mean 'grad_cam'"):
        explain(cnn, rand_images(1, 32), "grad_cma")
    with pytest.raises(ValueError, match="always returns image-sized maps"):
        explain(vit, rand_images(1, 64), "attention_rollout", upsample=True)
    with pytest.raises(TypeError):
        explain(cnn, rand_images(1, 32), "cam", head_fusion="max")


def test_normalize_maps() -> None:
    raw = torch.tensor([[[-1.0, 2.0], [0.5, 1.0]]])
    torch.testing.assert_close(normalize_maps(raw), torch.tensor([[[[0.0, 1.0], [0.25, 0.5]]]]))
    torch.testing.assert_close(normalize_maps(-raw.abs()), torch.zeros(1, 1, 2, 2))  # all negative -> constant
    up = normalize_maps(raw, size=(8, 8))
    assert up.shape == (1, 1, 8, 8) and up.amin() == 0 and up.amax() == 1
    with pytest.raises(ValueError, match=r"\(N, h, w\) or \(N, 1, h, w\)"):
        normalize_maps(torch.zeros(1, 2, 3, 3))


def test_rollouts_on_the_cifar_vit() -> None:
    from robustlab.models import create_model

    model = create_model("cifar:vit_tiny_patch4", pretrained=False)
    images = rand_images(1, 32)
    for method in VIT_METHODS:
        maps = explain(model, images, method)
        assert maps.shape == (1, 1, 32, 32) and torch.isfinite(maps).all() and maps.amax() == 1
