from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from explain_helpers import hand_image, one_conv_model, rand_images

from robustlab.explain import cam, grad_cam
from robustlab.models import Classifier, cam_features, classifier_weights, create_model


def hand_batch() -> torch.Tensor:
    image = hand_image()
    return torch.cat([image, image.flip(-1)])  # the second image is the mirror of the first


def test_cam_equals_its_closed_form() -> None:
    result = cam(one_conv_model(), hand_batch(), k=3)
    # features: f0 = [[1, 0], [0, 0]], f1 = [[0, 1], [0, -0.5]]; W = [[2, -1], [0, 3], [1, 1]], b = [0.5, 0, -1]
    cam0 = torch.tensor([[2.0, -1.0], [0.0, 0.5]])  # 2 f0 - f1
    cam1 = torch.tensor([[0.0, 3.0], [0.0, -1.5]])  # 3 f1
    cam2 = torch.tensor([[1.0, 1.0], [0.0, -0.5]])  # f0 + f1
    # logits = mean(CAM) + b = (0.875, 0.375, -0.625): the top-3 order is 0, 1, 2
    torch.testing.assert_close(result.logits[0], torch.tensor([0.875, 0.375, -0.625]))
    assert result.classes.tolist() == [[0, 1, 2], [0, 1, 2]]
    torch.testing.assert_close(result.raw[0], torch.stack([cam0, cam1, cam2]))
    torch.testing.assert_close(result.raw[1], result.raw[0].flip(-1))
    # normalised: relu -> [[2, 0], [0, 0.5]] -> min-max -> [[1, 0], [0, 0.25]] (already the input size)
    torch.testing.assert_close(result.maps[0, 0], torch.tensor([[1.0, 0.0], [0.0, 0.25]]))
    assert result.maps.shape == (2, 1, 2, 2)


def test_grad_cam_equals_its_closed_form() -> None:
    # with a GAP + linear head, d y_c / d A_k = W[c, k] / (h w): Grad-CAM is CAM / 4
    model = one_conv_model()
    torch.testing.assert_close(grad_cam(model, hand_batch(), k=3).raw, cam(model, hand_batch(), k=3).raw / 4)
    # with y = W mean(A^2) + b, alpha[c, k] = mean(2 W[c, k] A_k / 4) = W[c, k] mean(A_k) / 2;
    # mean(f0) = 0.25, mean(f1) = 0.125
    square = one_conv_model("square")
    result = grad_cam(square, hand_batch(), labels=torch.tensor([[1, 0], [1, 0]]))
    f0 = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    f1 = torch.tensor([[0.0, 1.0], [0.0, -0.5]])
    expected1 = 3 * 0.125 / 2 * f1  # alpha_1 = (0, 0.1875)
    expected0 = 2 * 0.25 / 2 * f0 - 1 * 0.125 / 2 * f1  # alpha_0 = (0.25, -0.0625)
    torch.testing.assert_close(result.raw[0], torch.stack([expected1, expected0]))
    assert result.classes.tolist() == [[1, 0], [1, 0]]
    # logits (0.6875, 0.9375, -0.4375): the default explains the top-1 class, 1
    torch.testing.assert_close(grad_cam(square, hand_batch()).raw[:, 0], result.raw[:, 0])
    with pytest.raises(ValueError, match="global average pooling"):
        cam(square, hand_batch())


def test_grad_cam_double_backward_is_exact() -> None:
    # gradcheck through the channel weights (they depend on the features) in float64
    model = one_conv_model("square").double()
    images = (0.2 + 0.6 * rand_images(1, 2)).double().requires_grad_(True)
    labels = torch.tensor([[0, 1]])

    def raw(x: torch.Tensor) -> torch.Tensor:
        return grad_cam(model, x, labels=labels, differentiable=True).raw

    assert torch.autograd.gradcheck(raw, (images,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", [cam, grad_cam])
def test_map_alignment_loss_trains_the_backbone_only(method) -> None:
    # AR2: a frozen reference, a repairing copy whose classifier is frozen, MSE between their CAMs
    reference = create_model("cifar:small_cnn", pretrained=False)
    repairing = copy.deepcopy(reference)
    repairing.net.fc.requires_grad_(False)
    clean = rand_images(2, 32)
    corrupted = (clean + 0.2 * rand_images(2, 32, seed=1)).clamp(0, 1)
    target = method(reference, clean)
    assert not target.raw.requires_grad
    result = method(repairing, corrupted, labels=target.classes, differentiable=True)
    assert result.raw.requires_grad and result.maps.requires_grad
    loss = F.mse_loss(result.raw, target.raw) + F.mse_loss(result.maps, target.maps)
    loss.backward()
    conv = repairing.net.features[0][0].weight
    assert conv.grad is not None and conv.grad.abs().sum() > 0
    assert repairing.net.fc.weight.grad is None and repairing.net.fc.bias.grad is None
    assert all(p.grad is None for p in reference.parameters())


def test_grad_cam_gradient_flows_through_the_channel_weights() -> None:
    # the loss gradient includes the second-order path through alpha = mean(d y / d A), not only the one through A
    # (with a GAP + linear head alpha is constant, so the squared-pooling head is where this shows)
    model = one_conv_model("square")
    images = rand_images(2, 2)
    conv = model.net.conv.weight
    result = grad_cam(model, images, differentiable=True)
    (full,) = torch.autograd.grad(result.raw.square().sum(), conv)

    features, logits = cam_features(model, images)
    score = logits.gather(1, result.classes).sum()
    (grad,) = torch.autograd.grad(score, features, create_graph=True)
    manual = torch.einsum("nc,nchw->nhw", grad.mean(dim=(2, 3)), features)
    (expected,) = torch.autograd.grad(manual.square().sum(), conv, retain_graph=True)
    torch.testing.assert_close(full, expected)
    detached = torch.einsum("nc,nchw->nhw", grad.mean(dim=(2, 3)).detach(), features)
    (first_order,) = torch.autograd.grad(detached.square().sum(), conv)
    assert full.abs().sum() > 0 and not torch.allclose(full, first_order)


@pytest.mark.parametrize("method", [cam, grad_cam])
def test_explaining_inside_a_training_step_leaves_grads_and_mode_alone(method) -> None:
    model = create_model("cifar:small_cnn", pretrained=False).train()
    before = {name: torch.randn_like(p) for name, p in model.named_parameters()}
    for name, p in model.named_parameters():
        p.grad = before[name].clone()
    result = method(model, rand_images(2, 32))
    assert not any(t.requires_grad for t in (result.raw, result.maps, result.logits))
    assert all(torch.equal(p.grad, before[name]) for name, p in model.named_parameters())
    assert all(m.training for m in model.modules())
    eval_model = create_model("cifar:small_cnn", pretrained=False)
    with torch.no_grad():  # also works when the caller disabled grad (Grad-CAM re-enables it for the head)
        method(eval_model, rand_images(1, 32))
    assert not any(m.training for m in eval_model.modules())


def check_cam_on(model: Classifier, images: torch.Tensor, grid: tuple[int, int]) -> None:
    result = cam(model, images, k=2)
    n = images.shape[0]
    assert result.raw.shape == (n, 2, *grid) and result.maps.shape == (n, 1, *images.shape[-2:])
    assert result.maps.amin() == 0 and torch.allclose(result.maps.flatten(1).amax(1), torch.ones(n))
    with torch.no_grad():
        logits = model(images)
    torch.testing.assert_close(result.logits, logits)
    assert torch.equal(result.classes, logits.topk(2, dim=1).indices)
    # faithfulness of CAM for GAP + linear heads: mean over pixels + bias = the explained logits
    _, bias = classifier_weights(model)
    torch.testing.assert_close(
        result.raw.mean(dim=(2, 3)) + bias[result.classes], logits.gather(1, result.classes), rtol=1e-4, atol=1e-4
    )
    gc = grad_cam(model, images, k=2)
    torch.testing.assert_close(gc.raw, result.raw / (grid[0] * grid[1]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("spec", "size", "grid"), [("cifar:resnet20", 32, (8, 8)), ("timm:test_resnet", 64, (2, 2))])
def test_cam_on_zoo_cnns(spec: str, size: int, grid: tuple[int, int]) -> None:
    check_cam_on(create_model(spec, pretrained=False), rand_images(2, size), grid)


def test_cam_on_efficientnet_lite0() -> None:
    pytest.importorskip("efficientnet_lite_pytorch")
    check_cam_on(create_model("efficientnet_lite0", pretrained=False), rand_images(1, 64), (2, 2))


def test_class_selection_and_errors() -> None:
    model = one_conv_model()
    images = hand_batch()
    assert cam(model, images, labels=torch.tensor([2, 1])).classes.tolist() == [[2], [1]]
    assert cam(model, images, labels=torch.tensor([[2, 0], [1, 1]]), k=2).raw.shape == (2, 2, 2, 2)
    with pytest.raises(ValueError, match="k must be an integer in 1..3"):
        cam(model, images, k=4)
    with pytest.raises(ValueError, match="disagrees"):
        cam(model, images, labels=torch.tensor([0, 1]), k=2)
    with pytest.raises(ValueError, match="int64"):
        cam(model, images, labels=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        grad_cam(model, images, labels=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"shape \(2,\) or \(2, k\)"):
        cam(model, images, labels=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="divide by 255"):
        cam(model, images * 255)
    with pytest.raises(ValueError, match="Classifier"):
        cam(model.net, images)  # type: ignore[arg-type]
    vit = create_model("cifar:vit_tiny_patch4", pretrained=False)
    with pytest.raises(ValueError, match="vit_probe"):
        grad_cam(vit, rand_images(1, 32))
