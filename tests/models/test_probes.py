from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from models_helpers import no_hooks_left, rand_images
from torch import Tensor, nn

from robustlab.models import Classifier, cam_features, classifier_weights, create_model, vit_probe


class HandSetCNN(nn.Module):
    """Features = the normalised image itself; head = GAP (or max pooling) + a hand-set linear layer."""

    def __init__(self, pool: str = "avg") -> None:
        super().__init__()
        self.pool = pool
        self.fc = nn.Linear(3, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]]))
            self.fc.bias.copy_(torch.tensor([0.5, -0.5]))

    def forward_features(self, x: Tensor) -> Tensor:
        return x

    def forward_head(self, features: Tensor) -> Tensor:
        pooled = features.mean(dim=(2, 3)) if self.pool == "avg" else features.amax(dim=(2, 3))
        return self.fc(pooled)

    def get_classifier(self) -> nn.Linear:
        return self.fc

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def hand_set(pool: str = "avg") -> Classifier:
    return Classifier(
        HandSetCNN(pool), mean=(0.0,) * 3, std=(1.0,) * 3, input_size=(3, 2, 2), class_names=["a", "b"], name="hand-set"
    ).eval()


def test_cam_on_hand_set_weights_is_exact() -> None:
    model = hand_set()
    images = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[0.5, 0.5], [0.5, 0.5]], [[0.0, 0.0], [0.0, 1.0]]]])
    features, logits = cam_features(model, images)
    weight, bias = classifier_weights(model)
    cam = torch.einsum("kc,nchw->nkhw", weight, features)
    # class 0 weighs channel 0 by +1 and channel 2 by -1: +1 top-left, -1 bottom-right, 0 elsewhere
    assert torch.equal(cam[0, 0], torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
    assert torch.equal(cam[0, 1], torch.ones(2, 2))
    # the mean of a CAM is the logit minus the bias: this is what makes CAM faithful for GAP + linear heads
    torch.testing.assert_close(cam.mean(dim=(2, 3)) + bias, logits)
    torch.testing.assert_close(logits, torch.tensor([[0.5, 0.5]]))


def test_gap_check_rejects_other_heads() -> None:
    model = hand_set(pool="max")
    cam_features(model, rand_images(1, 2))  # the feature map is still readable (Grad-CAM needs only that)
    with pytest.raises(ValueError, match="global average pooling"):
        classifier_weights(model)


@pytest.mark.parametrize(
    ("spec", "size", "channels"),
    [("cifar:resnet20", 32, 64), ("timm:test_resnet", 64, 96)],
)
def test_cam_features_match_the_model(spec: str, size: int, channels: int) -> None:
    model = create_model(spec, pretrained=False)
    images = rand_images(2, size)
    features, logits = cam_features(model, images)
    assert features.ndim == 4 and features.shape[:2] == (2, channels)
    with torch.no_grad():
        torch.testing.assert_close(logits, model(images))
    weight, bias = classifier_weights(model)
    assert weight.shape == (model.num_classes, channels)
    torch.testing.assert_close(F.linear(features.mean(dim=(2, 3)), weight, bias), logits)
    (grad,) = torch.autograd.grad(logits[:, 0].sum(), features)  # the graph is intact for Grad-CAM
    assert grad.shape == features.shape


def test_probes_leave_the_mode_alone() -> None:
    model = create_model("cifar:resnet20", pretrained=False).train()
    cam_features(model, rand_images(2, 32))
    classifier_weights(model)
    assert all(m.training for m in model.modules())


def test_flatten_head_is_refused_with_a_reason() -> None:
    model = create_model("cifar:resnet2b", pretrained=False)
    features, _ = cam_features(model, rand_images(1, 32))
    assert features.shape == (1, 16, 8, 8)
    with pytest.raises(ValueError, match="CAM needs global average pooling followed by a single linear"):
        classifier_weights(model)


def test_cam_refuses_vits_and_bad_input() -> None:
    vit = create_model("cifar:vit_tiny_patch4", pretrained=False)
    with pytest.raises(ValueError, match="vit_probe"):
        cam_features(vit, rand_images(1, 32))
    with pytest.raises(ValueError, match="Classifier"):
        cam_features(vit.net, rand_images(1, 32))  # type: ignore[arg-type]
    cnn = create_model("cifar:resnet20", pretrained=False)
    with pytest.raises(ValueError, match="divide by 255"):
        cam_features(cnn, rand_images(1, 32) * 255)


def attention_modules(model: Classifier) -> list[nn.Module]:
    return [block.attn for block in model.net.blocks]


@pytest.fixture
def fused_vit() -> Classifier:
    model = create_model("timm:test_vit", pretrained=False)
    for attn in attention_modules(model):
        attn.fused_attn = True  # whatever timm's default here, the probe must cope with fused attention
    return model


def test_vit_probe_captures_attention_from_a_fused_model(fused_vit: Classifier) -> None:
    images = rand_images(2, 160)
    probe = vit_probe(fused_vit, images)
    grid = tuple(fused_vit.net.patch_embed.grid_size)
    tokens = 1 + grid[0] * grid[1]
    assert probe.grid == grid and probe.num_prefix_tokens == 1
    assert probe.num_blocks == len(fused_vit.net.blocks) == len(probe.attentions)
    heads = fused_vit.net.blocks[0].attn.num_heads
    for attn in probe.attentions:
        assert attn.shape == (2, heads, tokens, tokens)
        torch.testing.assert_close(attn.sum(dim=-1), torch.ones(2, heads, tokens))
        assert attn.amax() < 1  # real, non-degenerate rows
    assert all(attn.fused_attn for attn in attention_modules(fused_vit))
    assert no_hooks_left(fused_vit)
    with torch.no_grad():
        torch.testing.assert_close(probe.logits, fused_vit(images))  # fused and explicit paths agree

    unfused = copy.deepcopy(fused_vit)
    for attn in attention_modules(unfused):
        attn.fused_attn = False
    reference = vit_probe(unfused, images)
    for mine, theirs in zip(probe.attentions, reference.attentions, strict=True):
        torch.testing.assert_close(mine, theirs)


def test_vit_probe_attention_equals_a_recomputation(fused_vit: Classifier) -> None:
    probe = vit_probe(fused_vit, rand_images(1, 160))
    block = fused_vit.net.blocks[1]
    x = block.norm1(probe.tokens[0])  # block 1's input is block 0's output
    n, t, _ = x.shape
    q, k, _ = block.attn.qkv(x).reshape(n, t, 3, block.attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    expected = (q @ k.transpose(-2, -1) * block.attn.scale).softmax(dim=-1)
    torch.testing.assert_close(probe.attentions[1], expected)


def test_vit_probe_restores_flags_and_hooks_on_errors(fused_vit: Classifier) -> None:
    def boom(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
        raise RuntimeError("boom")

    handle = fused_vit.net.blocks[-1].register_forward_hook(boom)
    with pytest.raises(RuntimeError, match="boom"):
        vit_probe(fused_vit, rand_images(1, 160))
    handle.remove()
    assert all(attn.fused_attn for attn in attention_modules(fused_vit))
    assert no_hooks_left(fused_vit)


def test_vit_probe_grid_and_token_map_on_the_cifar_vit() -> None:
    model = create_model("cifar:vit_tiny_patch4", pretrained=False)
    probe = vit_probe(model, rand_images(2, 32))
    assert probe.grid == (8, 8) and probe.tokens[-1].shape == (2, 65, 192)
    token_map = probe.token_map()
    assert token_map.shape == (2, 192, 8, 8)
    # patch (row 1, col 2) is token 1 + 1 * 8 + 2
    assert torch.equal(token_map[:, :, 1, 2], probe.tokens[-1][:, 1 + 8 + 2])
    (grad,) = torch.autograd.grad(probe.logits.sum(), probe.attentions[0])  # attention stays differentiable
    assert grad.abs().sum() > 0


def test_vit_probe_refuses_cnns() -> None:
    with pytest.raises(ValueError, match="not a vision transformer"):
        vit_probe(create_model("cifar:resnet20", pretrained=False), rand_images(1, 32))
