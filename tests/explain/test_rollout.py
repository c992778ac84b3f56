from __future__ import annotations

import copy

import pytest
import torch
from explain_helpers import rand_images

from robustlab.explain import (
    HEAD_FUSIONS,
    attention_rollout,
    clip_and_scale,
    gradient_rollout,
    rollout,
    token_gradient_rollout,
    token_weighted_rollout,
    token_weights,
)
from robustlab.models import Classifier, vit_probe


def random_attentions(layers: int = 3, n: int = 2, heads: int = 2, t: int = 5) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn((n, heads, t, t), generator=generator).softmax(dim=-1) for _ in range(layers)]


@pytest.mark.parametrize("head_fusion", HEAD_FUSIONS)
@pytest.mark.parametrize("discard_ratio", [0.0, 0.5, 0.9])
def test_rollout_rows_sum_to_one(head_fusion: str, discard_ratio: float) -> None:
    result = rollout(random_attentions(), head_fusion=head_fusion, discard_ratio=discard_ratio)
    assert result.shape == (2, 5, 5) and (result >= 0).all()
    torch.testing.assert_close(result.sum(dim=-1), torch.ones(2, 5))


def test_rollout_is_the_product_of_half_attention_half_identity() -> None:
    attentions = random_attentions(layers=2)
    eye = torch.eye(5)
    first, second = ((a.mean(dim=1) + eye) / 2 for a in attentions)
    torch.testing.assert_close(rollout(attentions), second @ first)  # later layers multiply from the left


def test_identity_and_uniform_attention() -> None:
    t, layers = 5, 4
    identity = [torch.eye(t).expand(1, 2, t, t)] * layers
    torch.testing.assert_close(rollout(identity), torch.eye(t).expand(1, t, t))  # class row over patches: 0
    # uniform U (U @ U = U): ((U + I) / 2)^L = I / 2^L + (1 - 2^-L) U
    uniform = [torch.full((1, 2, t, t), 1 / t)] * layers
    expected = torch.eye(t) / 2**layers + (1 - 2**-layers) / t
    torch.testing.assert_close(rollout(uniform)[0], expected)


def test_head_fusion_variants_by_hand() -> None:
    t = 3
    heads = torch.stack([torch.eye(t), torch.full((t, t), 1 / t)]).unsqueeze(0)  # head 0 = I, head 1 = uniform
    eye = torch.eye(t)
    # mean: (I + U) / 2 + I has diagonal 5/3 and off-diagonal 1/6, rows sum to 2
    torch.testing.assert_close(rollout([heads], head_fusion="mean")[0], eye * (5 / 6 - 1 / 12) + 1 / 12)
    # max: diagonal 1 + 1, off-diagonal 1/3, rows sum to 8/3
    torch.testing.assert_close(rollout([heads], head_fusion="max")[0], eye * (3 / 4 - 1 / 8) + 1 / 8)
    # min: I / 3 + I is diagonal, renormalised to I
    torch.testing.assert_close(rollout([heads], head_fusion="min")[0], eye)


def test_discard_ratio_by_hand() -> None:
    attention = torch.tensor([[0.9, 0.1], [0.4, 0.6]]).view(1, 1, 2, 2)
    # a quarter of 4 entries: the smallest (0.1) goes; + I -> [[1.9, 0], [0.4, 1.6]]; rows renormalised
    torch.testing.assert_close(rollout([attention], discard_ratio=0.25)[0], torch.tensor([[1.0, 0.0], [0.2, 0.8]]))
    torch.testing.assert_close(rollout([attention], discard_ratio=0.0)[0], (attention[0, 0] + torch.eye(2)) / 2)


def test_rollout_errors(vit: Classifier) -> None:
    attentions = random_attentions()
    with pytest.raises(ValueError, match="head_fusion must be one of"):
        rollout(attentions, head_fusion="median")
    with pytest.raises(ValueError, match="head_fusion must be one of"):
        attention_rollout(vit, rand_images(1, 64), head_fusion="median")
    for ratio in (1.0, -0.1, True, "0.5"):
        with pytest.raises(ValueError, match=r"discard_ratio must be a number in \[0, 1\)"):
            rollout(attentions, discard_ratio=ratio)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(N, heads, T, T\)"):
        rollout([attentions[0], attentions[1][:, :, :4, :4]])
    with pytest.raises(ValueError, match="at least one"):
        rollout([])


def test_uniform_attention_model_gives_a_flat_rollout(vit: Classifier) -> None:
    # zero queries and keys: every attention row is uniform over the 17 tokens, so each patch gets
    # (1 - 2^-6) / 17 from the class token (see test_identity_and_uniform_attention)
    model = copy.deepcopy(vit)
    with torch.no_grad():
        for block in model.net.blocks:
            block.attn.qkv.weight.zero_()
            block.attn.qkv.bias.zero_()
    maps = attention_rollout(model, rand_images(2, 64))
    torch.testing.assert_close(maps, torch.full((2, 4, 4), (1 - 2**-6) / 17))


def test_gradient_rollout_matches_chefer_recomputed(vit: Classifier) -> None:
    images = rand_images(2, 64)
    labels = torch.tensor([3, 7])
    probe = vit_probe(vit, images)
    score = probe.logits.gather(1, labels[:, None]).sum()
    grads = torch.autograd.grad(score, probe.attentions)
    result = torch.eye(17).expand(2, 17, 17)
    for attention, grad in zip(probe.attentions, grads, strict=True):
        result = result + (grad * attention).clamp(min=0).mean(dim=1) @ result
    expected = result[:, 0, 1:].reshape(2, 4, 4)
    torch.testing.assert_close(gradient_rollout(vit, images, labels=labels), expected)
    default = gradient_rollout(vit, images)  # top-1 prediction by default
    top1 = probe.logits.argmax(dim=1)
    torch.testing.assert_close(default, gradient_rollout(vit, images, labels=top1))


def test_token_weights_by_hand() -> None:
    tokens = torch.tensor([[[1.0, 2.0], [3.0, -1.0], [0.0, 5.0]]])
    grads = torch.tensor([[[1.0, 1.0], [-1.0, 1.0], [2.0, 0.2]]])
    # <T, dS/dT>_d = (3, -4, 1) -> ReLU (3, 0, 1) -> l1-normalised
    torch.testing.assert_close(token_weights(tokens, grads), torch.tensor([[0.75, 0.0, 0.25]]))
    torch.testing.assert_close(token_weights(tokens, -grads.abs()), torch.zeros(1, 3))  # nothing positive


def test_token_weighted_rollout_by_hand() -> None:
    # penultimate layer: uniform attention in both heads, weights (1, 0): A diag(W) = [[.5, 0], [.5, 0]] -> I + that
    # last layer: two heads (I and the swap), weights (.5, .5): mean_h A diag(W) = [[.25, .25], [.25, .25]]
    penultimate = torch.full((1, 2, 2, 2), 0.5)
    last = torch.stack([torch.eye(2), torch.tensor([[0.0, 1.0], [1.0, 0.0]])]).unsqueeze(0)
    a_pen = torch.tensor([[1.5, 0.0], [0.5, 1.0]])
    a_last = torch.tensor([[1.25, 0.25], [0.25, 1.25]])
    expected = a_last @ ((a_pen + a_last) / 2)  # average [[1.375, .125], [.375, 1.125]]
    result = token_weighted_rollout([penultimate, last], [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]])])
    torch.testing.assert_close(result[0], expected)
    torch.testing.assert_close(expected, torch.tensor([[1.8125, 0.4375], [0.8125, 1.4375]]))


def test_clip_and_scale_by_hand() -> None:
    maps = torch.arange(101.0).view(1, 1, 101)  # the 0.99 quantile of 0..100 is 99
    scaled = clip_and_scale(maps)
    assert scaled.shape == maps.shape
    torch.testing.assert_close(scaled[0, 0, [0, 50, 99, 100]], torch.tensor([0.0, 50 / 99, 1.0, 1.0]))
    torch.testing.assert_close(clip_and_scale(torch.ones(2, 3, 3)), torch.zeros(2, 3, 3))  # constant -> 0
    with pytest.raises(ValueError, match="quantile"):
        clip_and_scale(maps, quantile=0.0)


def test_token_gradient_rollout_follows_the_seed_recipe(vit: Classifier) -> None:
    images = rand_images(2, 64)
    labels = torch.tensor([1, 4])
    probe = vit_probe(vit, images)
    # the tokens entering the last two blocks are the outputs of blocks 3 and 4
    entering = [probe.tokens[3], probe.tokens[4]]
    score = probe.logits.gather(1, labels[:, None]).sum()
    grads = torch.autograd.grad(score, entering)
    eye = torch.eye(17)
    hats = []
    for tokens, grad, attention in zip(entering, grads, probe.attentions[-2:], strict=True):
        weights = (tokens * grad).sum(-1).clamp(min=0)
        weights = weights / weights.sum(-1, keepdim=True)
        hats.append(eye + (attention * weights[:, None, None, :]).clamp(min=0).mean(1))
    matrix = hats[1] @ ((hats[0] + hats[1]) / 2)
    row = matrix[:, 0, 1:]
    row = torch.minimum(row, torch.quantile(row, 0.99, dim=1, keepdim=True))
    row = (row - row.amin(1, keepdim=True)) / (row.amax(1, keepdim=True) - row.amin(1, keepdim=True))
    result = token_gradient_rollout(vit, images, labels=labels)
    torch.testing.assert_close(result, row.reshape(2, 4, 4))
    assert torch.allclose(result.flatten(1).amin(1), torch.zeros(2))
    assert torch.allclose(result.flatten(1).amax(1), torch.ones(2))


def test_token_gradient_rollout_needs_two_blocks() -> None:
    from explain_helpers import small_test_vit

    model = small_test_vit(32)
    model.net.blocks = model.net.blocks[:1]
    with pytest.raises(ValueError, match="last two blocks"):
        token_gradient_rollout(model, rand_images(1, 32))
