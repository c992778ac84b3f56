"""Patch-Fool on timm ViTs and the patch-corruption accuracy of AFAT."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from attacks_helpers import gen, images

from robustlab.attacks import ATTACKS, patch_corruption_accuracy, patch_fool, patch_pixel_mask, select_patches
from robustlab.attacks.patch import _pcgrad
from robustlab.models import vit_probe


def _labels(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


def _changed_patches(x: torch.Tensor, adv: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(N, h * w) bool: which patches differ anywhere."""
    n, _, height, width = x.shape
    diff = (adv != x).any(dim=1).view(n, grid[0], height // grid[0], grid[1], width // grid[1])
    return diff.any(dim=4).any(dim=2).flatten(1)


@pytest.mark.parametrize(("fixture", "grid"), [("test_vit", (10, 10)), ("vit_tiny", (8, 8))])
def test_only_the_selected_patches_change(request, fixture: str, grid: tuple[int, int]) -> None:
    model = request.getfixturevalue(fixture)
    x = images(2, size=model.input_size[-1], seed=1)
    y = _labels(model, x)
    chosen = select_patches(model, x, num_patches=2)
    assert chosen.shape == (2, 2) and chosen.dtype == torch.int64
    adv = patch_fool(model, x, y, num_patches=2, steps=2, generator=gen())
    assert adv.shape == x.shape and float(adv.min()) >= 0 and float(adv.max()) <= 1
    expected = torch.zeros(2, grid[0] * grid[1], dtype=torch.bool).scatter_(1, chosen, True)
    assert torch.equal(_changed_patches(x, adv, grid), expected)
    assert not model.training


def test_selection_is_the_most_attended_patch(vit_tiny) -> None:
    x = images(3, seed=2)
    with torch.no_grad():
        probe = vit_probe(vit_tiny, x)
    prefix = probe.num_prefix_tokens
    total = sum(a[..., prefix:].sum(dim=(1, 2)) for a in probe.attentions)
    assert torch.equal(select_patches(vit_tiny, x).squeeze(1), total.argmax(dim=1))
    one = probe.attentions[4][..., prefix:].sum(dim=(1, 2)).argmax(dim=1)
    assert torch.equal(select_patches(vit_tiny, x, selection_layer=4).squeeze(1), one)
    assert torch.equal(select_patches(vit_tiny, x, selection_layer=-2), select_patches(vit_tiny, x, selection_layer=4))


def test_attack_raises_loss_and_draws_attention_to_the_patch(vit_tiny) -> None:
    x = images(4, seed=3)
    y = _labels(vit_tiny, x)
    patches = select_patches(vit_tiny, x)
    adv = patch_fool(vit_tiny, x, y, steps=8, step_size=0.1, attention_weight=1.0, patches=patches, generator=gen(1))
    with torch.no_grad():
        clean, attacked = vit_probe(vit_tiny, x), vit_probe(vit_tiny, adv)

    def attention_to_patch(probe) -> torch.Tensor:
        column = patches[:, 0] + probe.num_prefix_tokens
        return torch.stack([a.mean(dim=1)[torch.arange(4), :, column].mean(dim=1) for a in probe.attentions]).mean(0)

    assert bool(
        (
            F.cross_entropy(attacked.logits, y, reduction="none") > F.cross_entropy(clean.logits, y, reduction="none")
        ).all()
    )
    assert bool((attention_to_patch(attacked) > attention_to_patch(clean)).all())


def test_given_patches_and_mild_linf_budget(vit_tiny) -> None:
    x = images(2, seed=4)
    y = _labels(vit_tiny, x)
    patches = torch.tensor([[0, 63], [10, 20]])
    eps = 8 / 255
    adv = patch_fool(vit_tiny, x, y, patches=patches, eps=eps, steps=3, generator=gen())
    expected = torch.zeros(2, 64, dtype=torch.bool).scatter_(1, patches, True)
    assert torch.equal(_changed_patches(x, adv, (8, 8)), expected)
    assert float((adv - x).abs().max()) <= eps + 1e-6
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1


def test_deterministic_and_batch_independent(vit_tiny) -> None:
    x = images(3, seed=5)
    y = _labels(vit_tiny, x)
    kwargs = {"steps": 2, "attention_layers": [1, 3]}
    a = patch_fool(vit_tiny, x, y, generator=gen(7), **kwargs)
    assert torch.equal(a, patch_fool(vit_tiny, x, y, generator=gen(7), **kwargs))
    full = patch_fool(vit_tiny, x, y, generator=[gen(10 + i) for i in range(3)], **kwargs)
    part = patch_fool(vit_tiny, x[[2]], y[[2]], generator=[gen(12)], **kwargs)
    assert torch.allclose(part, full[[2]], atol=1e-4)


def test_registered_and_leaves_grads_alone(vit_tiny) -> None:
    assert ATTACKS.get("patch_fool") is patch_fool
    x = images(2, seed=6)
    y = _labels(vit_tiny, x)
    param = next(vit_tiny.parameters())
    assert param.grad is None
    ATTACKS.get("patch_fool")(vit_tiny, x, y, generator=None, steps=1)
    assert param.grad is None and not vit_tiny.training


def test_pcgrad_removes_only_conflicting_components() -> None:
    ce = torch.tensor([[1.0, 0.0], [1.0, 0.0]]).view(2, 1, 1, 2)
    attention = torch.tensor([[-1.0, 1.0], [1.0, 1.0]]).view(2, 1, 1, 2)
    out = _pcgrad(attention, ce).view(2, 2)
    # conflicting (negative inner product): projected onto the normal plane of the CE gradient; agreeing: kept
    assert torch.allclose(out, torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    assert torch.equal(_pcgrad(attention, torch.zeros_like(ce)), attention)


def test_patch_pixel_mask() -> None:
    mask = patch_pixel_mask(torch.tensor([[0], [5]]), (2, 3), (2, 2))
    assert mask.shape == (2, 1, 4, 6)
    assert mask[0, 0, :2, :2].all() and int(mask[0].sum()) == 4
    assert mask[1, 0, 2:, 4:].all() and int(mask[1].sum()) == 4


def test_errors(vit_tiny, resnet20) -> None:
    x = images(2, seed=7)
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="not a vision transformer"):
        patch_fool(resnet20, x, y, steps=1)
    with pytest.raises(ValueError, match="exceeds the 8x8 token grid"):
        patch_fool(vit_tiny, x, y, num_patches=65, steps=1)
    with pytest.raises(ValueError, match=r"patch indices must lie in \[0, 64\)"):
        patch_fool(vit_tiny, x, y, patches=torch.tensor([[64], [0]]), steps=1)
    with pytest.raises(ValueError, match="patches must be an int64 tensor"):
        patch_fool(vit_tiny, x, y, patches=torch.tensor([0, 1]), steps=1)
    with pytest.raises(ValueError, match="selection_layer must be an integer block index"):
        patch_fool(vit_tiny, x, y, selection_layer=6, steps=1)
    with pytest.raises(ValueError, match="attention_layers entries"):
        patch_fool(vit_tiny, x, y, attention_layers=[0, 9], steps=1)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        patch_fool(vit_tiny, x, y, steps=0)
    with pytest.raises(ValueError, match="eps must be"):
        patch_fool(vit_tiny, x, y, eps=-1.0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        patch_fool(vit_tiny, x, torch.tensor([0, 10]))


# --- patch-corruption accuracy (AFAT) ----------------------------------------------------------------------------


def test_patch_corruption_accuracy_limits_and_determinism(linear) -> None:
    x = images(12, size=8, seed=8)
    y = _labels(linear, x)
    none = torch.zeros(12, 4, 4, dtype=torch.bool)
    assert patch_corruption_accuracy(linear, x, y, patch_size=2, mask=none) == 1.0
    assert patch_corruption_accuracy(linear, x, y, rho=0.0, patch_size=2, generator=gen()) == 1.0
    # everything occluded with black: every image becomes the same input, so one class is predicted
    black = _labels(linear, torch.zeros(1, 3, 8, 8))
    expected = float((y == black).double().mean())
    assert patch_corruption_accuracy(linear, x, y, patch_size=2, mask=~none, noise="zeros") == expected
    a = patch_corruption_accuracy(linear, x, y, rho=0.5, patch_size=2, generator=gen(3))
    assert a == patch_corruption_accuracy(linear, x, y, rho=0.5, patch_size=2, generator=gen(3))
    assert a < 1.0
    # per-sample generators: chunking does not change which patches or noise an image gets
    gens = [gen(50 + i) for i in range(12)]
    whole = patch_corruption_accuracy(linear, x, y, rho=0.5, patch_size=2, generator=gens)
    chunked = patch_corruption_accuracy(
        linear, x, y, rho=0.5, patch_size=2, generator=[gen(50 + i) for i in range(12)], batch_size=5
    )
    assert whole == chunked


def test_patch_corruption_accuracy_errors(linear) -> None:
    x, y = images(2, size=8), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="pass rho"):
        patch_corruption_accuracy(linear, x, y, patch_size=2)
    with pytest.raises(ValueError, match="must divide the image size"):
        patch_corruption_accuracy(linear, x, y, rho=0.1, patch_size=3)
    with pytest.raises(ValueError, match="ratio must lie in"):
        patch_corruption_accuracy(linear, x, y, rho=1.5, patch_size=2)
    with pytest.raises(ValueError, match="mask must have shape"):
        patch_corruption_accuracy(linear, x, y, patch_size=2, mask=torch.zeros(3, 4, 4, dtype=torch.bool))
