"""AutoAttack-style sanity warnings: each fires on its cause, and a healthy model gets none."""

from __future__ import annotations

import warnings

import pytest
import torch
from attacks_helpers import gen, images, linear_classifier
from torch import nn

from robustlab.attacks import ATTACKS, apgd, fgsm, patch_fool, pgd, worst_case
from robustlab.models import Classifier


def _wrap(net: nn.Module) -> Classifier:
    return Classifier(
        net, mean=(0.0,) * 3, std=(1.0,) * 3, input_size=(3, 8, 8), class_names=[str(k) for k in range(10)]
    ).eval()


class _Noisy(nn.Module):
    """Adds fresh noise on every call even in eval mode (a randomised defence)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x + 0.05 * torch.randn_like(x))


class _Constant(nn.Module):
    """Logits that ignore the pixels: every input gradient is zero."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.linspace(0, 1, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :10] * 0 + self.bias


def _data(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    x = images(4, size=8, seed=20)
    with torch.no_grad():
        return x, model(x).argmax(dim=1)


def test_no_warnings_for_a_healthy_model(linear) -> None:
    x, y = _data(linear)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pgd(linear, x, y, steps=2, generator=gen())
        fgsm(linear, x, y, norm="l2", loss="dlr")
        worst_case(linear, x, y, ["fgsm"])


def test_probabilities_warn() -> None:
    model = _wrap(nn.Sequential(nn.Flatten(), nn.Linear(192, 10), nn.Softmax(dim=1)))
    x, y = _data(model)
    with pytest.warns(UserWarning, match="look like probabilities.*pass|logits"):
        pgd(model, x, y, steps=1, generator=gen())


def test_train_mode_warns_and_stays() -> None:
    model = linear_classifier().train()
    x, y = _data(model)
    with pytest.warns(UserWarning, match="train mode"):
        pgd(model, x, y, steps=1, generator=gen())
    assert model.training


def test_zero_gradients_warn() -> None:
    model = _wrap(_Constant())
    x, y = _data(model)
    with pytest.warns(UserWarning, match="4 of 4 images have an all-zero input gradient"):
        pgd(model, x, y, steps=1, generator=gen())


def test_apgd_warns_about_zero_gradients_too() -> None:
    model = _wrap(_Constant())
    x, y = _data(model)
    with pytest.warns(UserWarning, match="apgd: 4 of 4 images have an all-zero input gradient"):
        apgd(model, x, y, steps=2, generator=gen())


@pytest.mark.parametrize("attack", ["pgd", "apgd"])
def test_images_already_misclassified_do_not_count_as_zero_gradients(attack: str) -> None:
    # wrong labels: every image is already fooled, so a flat loss there is no sign of gradient masking
    model = _wrap(_Constant())
    x, y = _data(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ATTACKS.get(attack)(model, x, (y + 1) % 10, steps=2, generator=gen())


def test_randomised_forward_warns() -> None:
    model = _wrap(_Noisy(nn.Sequential(nn.Flatten(), nn.Linear(192, 10))))
    x, y = _data(model)
    with pytest.warns(UserWarning, match="two forward passes on the same input differ"):
        fgsm(model, x, y)


def test_patch_fool_warns_in_train_mode(vit_tiny) -> None:
    x = images(1, seed=21)
    vit_tiny.train()
    try:
        with pytest.warns(UserWarning, match="train mode"):
            patch_fool(vit_tiny, x, torch.tensor([0]), steps=1, generator=gen())
        assert vit_tiny.training
    finally:
        vit_tiny.eval()


@pytest.mark.parametrize("attack", ["pgd", "fgsm", "apgd", "square"])
def test_linf_eps_above_one_warns_and_names_the_fix(linear, attack: str) -> None:
    x, y = _data(linear)
    kwargs = {"steps": 1} if attack in ("pgd", "apgd") else ({"queries": 2} if attack == "square" else {})
    if attack != "fgsm":
        kwargs["generator"] = gen()
    with pytest.warns(UserWarning, match=r"eps=8 exceeds 1.*did you mean eps=8/255\?"):
        ATTACKS.get(attack)(linear, x, y, eps=8, **kwargs)


def test_pixel_scale_eps_and_l2_radii_above_one_do_not_warn(linear) -> None:
    x, y = _data(linear)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pgd(linear, x, y, eps=8 / 255, steps=1, generator=gen())
        pgd(linear, x, y, eps=1.0, steps=1, generator=gen())  # the whole box: legal and exactly 1
        pgd(linear, x, y, eps=3.0, norm="l2", steps=1, generator=gen())  # ImageNet's usual L2 radius
