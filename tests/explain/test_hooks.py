from __future__ import annotations

import pytest
import torch
from explain_helpers import hook_count, one_conv_model, rand_images
from torch import nn

from robustlab.explain import ActivationHooks


def test_records_outputs_inputs_and_gradients() -> None:
    model = one_conv_model()
    images = rand_images(2, 2).requires_grad_(True)
    with (
        ActivationHooks(model, ["net.conv"], with_gradients=True) as out,
        ActivationHooks(model, {"head": model.net.fc}, read="input") as inp,
    ):
        logits = model(images)
        torch.autograd.grad(logits[:, 0].sum(), images)  # any gradient call passing through is recorded
    features = model.net.conv(images)
    torch.testing.assert_close(out.activations["net.conv"], features)
    torch.testing.assert_close(inp.activations["head"], features.mean(dim=(2, 3)))
    # d logit_0 / d features = W[0, k] / (h * w) everywhere
    expected = model.net.fc.weight[0].view(1, 2, 1, 1).expand(2, 2, 2, 2) / 4
    torch.testing.assert_close(out.gradients["net.conv"], expected)
    assert hook_count(model) == 0


def test_grad_uses_autograd_grad_and_leaves_param_grads_alone() -> None:
    model = one_conv_model()
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    with ActivationHooks(model, ["net.conv"]) as hooks:
        logits = model(rand_images(3, 2))
    grads = hooks.grad(logits[:, 1].sum())
    expected = model.net.fc.weight[1].view(1, 2, 1, 1).expand(3, 2, 2, 2) / 4
    torch.testing.assert_close(grads["net.conv"], expected)
    assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in model.parameters())


def test_handles_are_removed_on_exceptions() -> None:
    model = one_conv_model()
    with pytest.raises(RuntimeError, match="boom"):
        with ActivationHooks(model, ["net.conv", "net.fc"], read="input", with_gradients=True):
            model(rand_images(1, 2))
            raise RuntimeError("boom")
    assert hook_count(model) == 0
    hooks = ActivationHooks(model, ["net.conv"])
    for _ in range(100):
        with hooks:
            model(rand_images(1, 2))
    assert hook_count(model) == 0


def test_bad_targets_and_misuse() -> None:
    model = one_conv_model()
    with pytest.raises(ValueError, match="Did you mean 'net.conv'"):
        ActivationHooks(model, ["net.cnv"])
    with pytest.raises(ValueError, match="read must be"):
        ActivationHooks(model, ["net.conv"], read="weights")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        ActivationHooks(model, [])
    with ActivationHooks(model, ["net.conv"]) as hooks:
        with torch.no_grad():
            logits = model(rand_images(1, 2))
    with pytest.raises(ValueError, match="do not require grad"):
        hooks.grad(logits.sum())
    with pytest.raises(ValueError, match="nothing recorded"):
        hooks.grad(logits.sum(), names=["other"])
    nested = ActivationHooks(model, ["net.conv"])
    with nested, pytest.raises(RuntimeError, match="already active"):
        nested.__enter__()
    assert hook_count(model) == 0


def test_last_call_wins_for_reused_modules() -> None:
    layer = nn.Linear(2, 2)
    model = nn.Sequential(layer, nn.ReLU(), layer)
    x = torch.randn(1, 2)
    with ActivationHooks(model, {"shared": layer}) as hooks:
        y = model(x)
    torch.testing.assert_close(hooks.activations["shared"], y)
