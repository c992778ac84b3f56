"""AR2 repair on a tiny CNN with synthetic 32 px data: invariants of the two stages, selection and errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from robustlab.data import ArrayDataset
from robustlab.methods import METHODS, AR2Config, repair
from robustlab.methods.ar2 import class_set, finetune_loss, make_reference, normalize_cam, refinement_loss
from robustlab.models import create_model
from robustlab.models.classifier import Classifier
from robustlab.perturb import perturb

CLASSES = [str(i) for i in range(10)]


def tiny_model(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)  # test-only: the model constructor has no generator argument
    return create_model("cifar:small_cnn", pretrained=False)


def tiny_data(n: int = 24, seed: int = 0) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 32, 32, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return ArrayDataset(images, labels, class_names=CLASSES, name="synthetic", split="train")


def fast_config(**overrides: object) -> AR2Config:
    settings = dict(iterations=1, refine_steps=1, finetune_steps=1, batch_size=8, val_fraction=0.25, augment=False,
                    refine_lr=0.1, finetune_lr=0.1)  # fmt: skip
    settings.update(overrides)
    return AR2Config(**settings)  # type: ignore[arg-type]


def test_registered_as_method() -> None:
    assert METHODS.get("ar2") is repair


def test_normalize_cam_exact_values() -> None:
    raw = torch.tensor([[[[2.0, -1.0], [1.0, 0.0]], [[-3.0, -1.0], [-2.0, -0.5]]]])  # (1, 2, 2, 2)
    out = normalize_cam(raw)
    torch.testing.assert_close(out[0, 0], torch.tensor([[2.0, 0.0], [1.0, 0.0]]) / (2.0 + 1e-8))
    assert torch.equal(out[0, 1], torch.zeros(2, 2))  # negative everywhere stays zero (no min-max stretch)


def test_class_set_is_top_k_with_true_label_replacing_the_last() -> None:
    model = tiny_model()
    images = tiny_data(6).get_batch(range(6))[0]
    logits = model(images).detach()
    order = logits.argsort(dim=1, descending=True)
    labels = order[:, 9].clone()  # the least likely class: never in the top 3
    labels[0] = order[0, 1]  # already in the top 3: the set is the plain top 3
    classes = class_set(model, images, labels, 3)
    assert torch.equal(classes[0], order[0, :3])
    assert torch.equal(classes[1:, :2], order[1:, :2])
    assert torch.equal(classes[1:, 2], labels[1:])


def test_refinement_loss_is_zero_for_the_reference_itself_with_alpha_one() -> None:
    model = tiny_model()
    reference = make_reference(model)
    images, labels = tiny_data(8).get_batch(range(8))
    corrupted = perturb(images, "gaussian_noise", 3, generator=torch.Generator().manual_seed(0))
    loss, _ = refinement_loss(copy.deepcopy(model), reference, images, corrupted, labels, alpha=1.0)
    assert loss.item() == 0.0
    loss, _ = refinement_loss(copy.deepcopy(model), reference, images, corrupted, labels, alpha=0.0)
    assert loss.item() > 0  # corrupted CAMs differ from the clean targets


def test_refinement_loss_gradient_reaches_the_backbone() -> None:
    model = tiny_model()
    reference = make_reference(tiny_model(seed=1))
    images, labels = tiny_data(8).get_batch(range(8))
    loss, _ = refinement_loss(model, reference, images, images, labels, alpha=0.5)
    grads = torch.autograd.grad(loss, [model.net.features[0][0].weight])
    assert grads[0].abs().sum() > 0


def test_finetune_loss_is_two_cross_entropies() -> None:
    model = tiny_model()
    images, labels = tiny_data(8).get_batch(range(8))
    loss, _ = finetune_loss(model, images, images, labels)
    torch.testing.assert_close(loss, 2 * nn.functional.cross_entropy(model(images), labels))


def test_refinement_updates_backbone_only_and_reference_never_changes() -> None:
    model = tiny_model()
    before = copy.deepcopy(model.state_dict())
    result = repair(model, tiny_data(), corruption="gaussian_noise", method="refine",
                    config=fast_config(select_best=False), device="cpu")  # fmt: skip
    after = result.model.state_dict()
    assert torch.equal(after["net.fc.weight"], before["net.fc.weight"])
    assert torch.equal(after["net.fc.bias"], before["net.fc.bias"])
    assert not torch.equal(after["net.features.0.0.weight"], before["net.features.0.0.weight"])
    # the input model and the frozen reference are untouched (parameters and BN buffers alike)
    for name, value in before.items():
        assert torch.equal(model.state_dict()[name], value), name
        assert torch.equal(result.reference.state_dict()[name], value), name
    assert not result.reference.training
    assert not any(p.requires_grad for p in result.reference.parameters())


def test_finetune_stage_updates_the_classifier() -> None:
    model = tiny_model()
    result = repair(model, tiny_data(), corruption="fog", method="finetune", config=fast_config(select_best=False),
                    device="cpu")  # fmt: skip
    assert not torch.equal(result.model.net.fc.weight, model.net.fc.weight)


def test_per_corruption_and_unified_runs_save_loadable_checkpoints(tmp_path) -> None:
    model = tiny_model()
    images = tiny_data(4, seed=5).get_batch(range(4))[0]
    for corruption in ("gaussian_noise", "unified"):
        config = fast_config(unified_corruptions=("gaussian_noise", "contrast"))
        path = tmp_path / f"{corruption}.safetensors"
        result = repair(model, tiny_data(), corruption=corruption, config=config, device="cpu", checkpoint=path)
        assert result.checkpoint == str(path)
        assert [h["stage"] for h in result.history] == ["select", "refine", "finetune", "select"]
        assert result.steps == 2
        loaded = create_model(f"file:{path}")
        torch.testing.assert_close(loaded(images), result.model(images))


def test_baselines_share_the_step_budget() -> None:
    model = tiny_model()
    config = fast_config(refine_steps=2, finetune_steps=1)
    steps = {m: repair(model, tiny_data(), corruption="contrast", method=m, config=config, device="cpu").steps
             for m in ("ar2", "augmix")}  # fmt: skip
    assert steps == {"ar2": 3, "augmix": 3}


def test_selection_is_deterministic_under_a_seed() -> None:
    model = tiny_model()
    a = repair(model, tiny_data(), corruption="gaussian_noise", config=fast_config(), device="cpu")
    b = repair(model, tiny_data(), corruption="gaussian_noise", config=fast_config(), device="cpu")
    assert a.history == b.history
    for name, value in a.model.state_dict().items():
        assert torch.equal(b.model.state_dict()[name], value), name


def test_unknown_corruption_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="gaussian_noise"):
        repair(tiny_model(), tiny_data(), corruption="gaussian_noize", config=fast_config(), device="cpu")
    with pytest.raises(ValueError, match="unified_corruptions|Unknown"):
        AR2Config(unified_corruptions=("fogg",))


def test_model_without_cam_head_is_a_clear_error() -> None:
    class FlattenHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 32 * 32, 10)

        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

        def forward_head(self, features: torch.Tensor) -> torch.Tensor:
            return self.fc(features.flatten(1))

        def get_classifier(self) -> nn.Module:
            return self.fc

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.forward_head(self.forward_features(x))

    model = Classifier(FlattenHead(), mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(3, 32, 32), class_names=CLASSES)
    with pytest.raises(ValueError, match="CAM head"):
        repair(model, tiny_data(), corruption="fog", config=fast_config(), device="cpu")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="method"):
        repair(tiny_model(), tiny_data(), corruption="fog", method="mixup", config=fast_config(), device="cpu")
    with pytest.raises(ValueError, match="alpha"):
        AR2Config(alpha=1.5)
    with pytest.raises(ValueError, match="severity"):
        AR2Config(severity=0)
