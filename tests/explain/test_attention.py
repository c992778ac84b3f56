from __future__ import annotations

import copy

import pytest
import torch
from explain_helpers import hook_count, rand_images, small_test_vit

from robustlab.explain import (
    attention_maps,
    attention_rollout,
    gradient_rollout,
    token_gradient_rollout,
)
from robustlab.models import Classifier, create_model, vit_probe

ALL_ROLLOUTS = (attention_rollout, gradient_rollout, token_gradient_rollout)


def fused_flags(model: Classifier) -> list[bool]:
    return [block.attn.fused_attn for block in model.net.blocks]


def unfused_copy(model: Classifier) -> Classifier:
    unfused = copy.deepcopy(model)
    for block in unfused.net.blocks:
        block.attn.fused_attn = False
    return unfused


def test_attention_maps_read_the_query_row_over_the_patches(vit: Classifier) -> None:
    images = rand_images(2, 64)
    probe = vit_probe(vit, images)
    maps = attention_maps(vit, images)
    assert maps.shape == (2, 6, 2, 4, 4) and not maps.requires_grad
    # class token (token 0) over the 16 patch tokens (1..16), row-major on the 4x4 grid
    expected = torch.stack([a[:, :, 0, 1:] for a in probe.attentions], dim=1).reshape(2, 6, 2, 4, 4)
    torch.testing.assert_close(maps, expected)
    # patch (1, 3) is token 1 + 7; "center" is patch (2, 2), token 1 + 10
    one = attention_maps(vit, images, query=7, layers=[-1, 0])
    torch.testing.assert_close(one[:, 0], probe.attentions[5][:, :, 8, 1:].reshape(2, 2, 4, 4))
    torch.testing.assert_close(one[:, 1], probe.attentions[0][:, :, 8, 1:].reshape(2, 2, 4, 4))
    center = attention_maps(vit, images, query="center", layers=[2])
    torch.testing.assert_close(center[:, 0], probe.attentions[2][:, :, 11, 1:].reshape(2, 2, 4, 4))
    # the class token also attends to itself, so the patch part sums to less than 1
    assert (maps.sum(dim=(-2, -1)) < 1).all() and (maps >= 0).all()


def test_fused_and_unfused_test_vit_give_the_same_explanations(vit160: Classifier) -> None:
    assert all(fused_flags(vit160))
    unfused = unfused_copy(vit160)
    images = rand_images(1, 160)
    fused_maps = attention_maps(vit160, images)
    assert fused_maps.shape == (1, 6, 2, 10, 10) and torch.isfinite(fused_maps).all()
    torch.testing.assert_close(fused_maps, attention_maps(unfused, images))
    for explainer in ALL_ROLLOUTS:
        mine = explainer(vit160, images)
        assert mine.shape == (1, 10, 10) and torch.isfinite(mine).all() and mine.abs().sum() > 0
        torch.testing.assert_close(mine, explainer(unfused, images))
    assert all(fused_flags(vit160)) and not any(fused_flags(unfused))
    assert hook_count(vit160) == 0


def test_no_hooks_leak_over_many_calls(vit: Classifier) -> None:
    images = rand_images(1, 64)
    calls = (attention_maps, *ALL_ROLLOUTS)
    for i in range(6 * len(calls)):  # every explainer six times: a leak would show as growing hook counts
        calls[i % len(calls)](vit, images)
    assert hook_count(vit) == 0
    assert all(fused_flags(vit))


def test_hooks_and_flags_are_restored_when_the_forward_raises(vit: Classifier) -> None:
    def boom(module, args, output):
        raise RuntimeError("boom")

    handle = vit.net.blocks[-1].mlp.register_forward_hook(boom)
    try:
        for explainer in (attention_maps, *ALL_ROLLOUTS):
            with pytest.raises(RuntimeError, match="boom"):
                explainer(vit, rand_images(1, 64))
    finally:
        handle.remove()
    assert hook_count(vit) == 0 and all(fused_flags(vit))


def test_explainers_leave_grads_and_mode_alone(vit: Classifier) -> None:
    model = copy.deepcopy(vit).train()
    before = {name: torch.randn_like(p) for name, p in model.named_parameters()}
    for name, p in model.named_parameters():
        p.grad = before[name].clone()
    for explainer in (attention_maps, *ALL_ROLLOUTS):
        assert not explainer(model, rand_images(1, 64)).requires_grad
    assert all(torch.equal(p.grad, before[name]) for name, p in model.named_parameters())
    assert all(m.training for m in model.modules())
    # also under a caller's no_grad (the gradient rollouts re-enable grad for themselves)
    with torch.no_grad():
        for explainer in ALL_ROLLOUTS:
            assert torch.isfinite(explainer(vit, rand_images(1, 64))).all()


def test_differentiable_maps_keep_the_graph(vit: Classifier) -> None:
    images = rand_images(1, 64)
    qkv = vit.net.blocks[-1].attn.qkv.weight
    for explainer in (attention_maps, *ALL_ROLLOUTS):
        maps = explainer(vit, images, differentiable=True)
        (grad,) = torch.autograd.grad(maps.square().sum(), qkv)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, explainer.__name__


def test_upsampled_rollouts(vit: Classifier) -> None:
    images = rand_images(2, 64)
    for explainer in ALL_ROLLOUTS:
        small, large = explainer(vit, images), explainer(vit, images, upsample=True)
        assert large.shape == (2, 64, 64)
        # bilinear upsampling by 16 keeps the mean of each map's interior structure close; the extremes stay
        assert large.amax() <= small.amax() + 1e-6 and large.amin() >= small.amin() - 1e-6


def test_bad_queries_layers_and_models(vit: Classifier) -> None:
    images = rand_images(1, 64)
    with pytest.raises(ValueError, match=r"patch index in 0..15"):
        attention_maps(vit, images, query=16)
    with pytest.raises(ValueError, match="query must be one of"):
        attention_maps(vit, images, query="middle")
    with pytest.raises(ValueError, match="layers must be block indices"):
        attention_maps(vit, images, layers=[6])
    with pytest.raises(ValueError, match="model's input size"):
        attention_maps(vit, rand_images(1, 32))
    with pytest.raises(ValueError, match=r"shape \(1,\): one class per image"):
        gradient_rollout(vit, images, labels=torch.tensor([[0, 1]]))
    cnn = create_model("cifar:small_cnn", pretrained=False)
    for explainer in (attention_maps, *ALL_ROLLOUTS):
        with pytest.raises(ValueError, match="not a vision transformer"):
            explainer(cnn, rand_images(1, 32))
    no_cls = small_test_vit(64, class_token=False, global_pool="avg")
    for explainer in ALL_ROLLOUTS:
        with pytest.raises(ValueError, match="no class token"):
            explainer(no_cls, images)
    assert attention_maps(no_cls, images, query="center").shape == (1, 6, 2, 4, 4)


def test_open_clip_tower(tiny_clip: Classifier) -> None:
    images = rand_images(2, 32)
    maps = attention_maps(tiny_clip, images, query="center")
    assert maps.shape == (2, 2, 2, 4, 4) and torch.isfinite(maps).all()
    assert attention_rollout(tiny_clip, images).shape == (2, 4, 4)
    tg = token_gradient_rollout(tiny_clip, images)
    assert tg.shape == (2, 4, 4) and torch.isfinite(tg).all()
    assert hook_count(tiny_clip) == 0
    # open_clip's nn.MultiheadAttention hands out its weights outside the autograd graph; gradient_rollout
    # recomputes each attention explicitly for the call
    gr = gradient_rollout(tiny_clip, images)
    assert gr.shape == (2, 4, 4) and torch.isfinite(gr).all() and (gr >= 0).all()
    assert hook_count(tiny_clip) == 0


def test_open_clip_explicit_attention_matches_the_module(tiny_clip: Classifier) -> None:
    from robustlab.explain.rollout import _attention_in_graph
    from robustlab.models.probes import _vit_parts, vit_probe

    images = rand_images(2, 32)
    plain = vit_probe(tiny_clip, images)
    with _attention_in_graph(_vit_parts(tiny_clip)):
        explicit = vit_probe(tiny_clip, images.requires_grad_(True))
    torch.testing.assert_close(explicit.logits, plain.logits, atol=1e-5, rtol=1e-5)
    for a, b in zip(explicit.attentions, plain.attentions, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    grads = torch.autograd.grad(explicit.logits[:, 0].sum(), explicit.attentions)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_token_gradient_rollout_all_layers(tiny_clip: Classifier) -> None:
    images = rand_images(2, 32)
    two = token_gradient_rollout(tiny_clip, images)
    every = token_gradient_rollout(tiny_clip, images, layers="all")
    assert every.shape == two.shape and every.min() >= 0 and every.max() <= 1
    # the 2-block tiny CLIP: the all-layer product differs from the averaged last-two recipe
    assert not torch.allclose(every, two)
    with pytest.raises(ValueError, match="layers must be one of"):
        token_gradient_rollout(tiny_clip, images, layers="first")
