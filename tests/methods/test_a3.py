"""A3 (reconstructed): the module's invariants, attach / detach, modes, checkpoints, losses and one training run."""

from __future__ import annotations

import math

import pytest
import torch

from a3_helpers import images, switch_some_channels_on, tiny
from robustlab.data import ArrayDataset
from robustlab.methods import a3
from robustlab.methods.a3 import (
    A3Config,
    A3LossConfig,
    a3_loss,
    attach,
    degradation_loss,
    get_attachment,
    info_nce_loss,
    ranking_loss,
    train_a3,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one thread, and far faster when other processes share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- settings and attachment errors that involve the losses (the module's own tests: tests/models/test_a3_module.py)


def test_config_errors_name_the_setting() -> None:
    for kwargs, match in [({"tau": 0}, "tau"), ({"threshold": 1.0}, "threshold"), ({"percentile": 90}, "percentile"),
                          ({"beta": -1}, "beta")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            A3Config(**kwargs)
    with pytest.raises(ValueError, match="Did you mean 'trades'"):
        A3LossConfig(at="trade")
    with pytest.raises(ValueError, match="steps"):
        A3LossConfig(steps=0)


def test_unknown_layer_and_bad_attachments_raise_clear_errors() -> None:
    model = tiny()
    with pytest.raises(ValueError, match="no submodule 'net.stage3'.*Did you mean"):
        attach(model, ["net.stage3"])
    with pytest.raises(ValueError, match="feature-map output"):
        attach(model, ["net.fc"])
    with pytest.raises(ValueError, match="at least one"):
        attach(model, [])
    with pytest.warns(UserWarning, match="negative values"):
        attach(model, ["net.stage1.0"])  # a convolution's output, before its ReLU
    with pytest.raises(ValueError, match="already has A3"):
        attach(model, ["net.stage2"])
    with pytest.raises(ValueError, match="needs a model with A3 attached"):
        a3_loss(tiny(), images(), torch.zeros(6, dtype=torch.long))


# --- losses -----------------------------------------------------------------------------------------------------


def test_info_nce_prefers_anchors_near_their_positive() -> None:
    anchor = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    near, far = anchor.clone(), -anchor
    good = info_nce_loss(anchor, near, far, temperature=0.1)
    bad = info_nce_loss(anchor, far, near, temperature=0.1)
    assert 0 < good.item() < 0.01 and bad.item() > 10
    # a positive exactly as close as each of the M negatives: log(1 + M), here M = 2
    one = anchor[:1]
    assert info_nce_loss(one, one, one.repeat(2, 1), 0.1).item() == pytest.approx(math.log(3), rel=1e-5)


def test_ranking_loss_is_zero_only_when_attenuated_beats_plain_beats_amplified() -> None:
    labels = torch.tensor([0])
    high, mid, low = (torch.tensor([[v, 0.0]]) for v in (4.0, 1.0, -2.0))
    assert ranking_loss(high, mid, low, labels, margin=0.1).item() == 0.0
    assert ranking_loss(low, mid, high, labels, margin=0.1).item() > 1.0
    # equal log-probabilities violate both margins by exactly the margin
    assert ranking_loss(mid, mid, mid, labels, margin=0.1).item() == pytest.approx(0.2)


def test_degradation_loss_targets_the_top_wrong_class() -> None:
    labels = torch.tensor([0])
    to_wrong = torch.tensor([[0.0, 5.0, -5.0]])  # already predicts class 1, the top wrong one
    to_true = torch.tensor([[5.0, 0.0, -5.0]])
    assert degradation_loss(to_wrong, labels).item() < 0.01 < degradation_loss(to_true, labels).item()
    logits = to_true.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(degradation_loss(logits, labels), logits)
    assert grad[0, 1] < 0 < grad[0, 0]  # descent raises the top wrong class and lowers the true one


@pytest.mark.parametrize("at", ["pgd", "trades"])
def test_a3_loss_on_a_tiny_model_reaches_the_mask_and_keeps_modes(at: str) -> None:
    model = tiny()
    attach(model, ["net.stage2"])
    switch_some_channels_on(model)
    model.train()
    x, y = images(8), torch.arange(8) % 4
    loss, logits, parts = a3_loss(model, x, y, A3LossConfig(at=at), generator=torch.Generator().manual_seed(0))
    block = get_attachment(model).modules_in_order()[0]
    assert model.training and block.mode == "attenuate" and block.generator is None
    assert logits.shape == (8, 4) and math.isfinite(loss.item())
    assert set(parts) == {"base", "contrastive", "ranking", "degradation"}
    assert all(v >= 0 for v in parts.values())
    expected = parts["base"] + parts["contrastive"] + parts["ranking"] + 0.5 * parts["degradation"]
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    theta = get_attachment(model).modules_in_order()[0].logits
    (grad,) = torch.autograd.grad(loss, theta)
    assert grad.abs().sum() > 0
    # weights 0 leave the base adversarial loss alone (the attenuation-only ablation)
    only = A3LossConfig(at=at, contrastive_weight=0, ranking_weight=0, degradation_weight=0)
    loss, _, parts = a3_loss(model, x, y, only, generator=torch.Generator().manual_seed(0))
    assert set(parts) == {"base"} and loss.item() == pytest.approx(parts["base"], rel=1e-6)


def test_without_a3_and_a3_weights_zero_the_loss_is_plain_adversarial_training() -> None:
    model = tiny()
    x, y = images(8), torch.arange(8) % 4
    cfg = A3LossConfig(steps=3, contrastive_weight=0, ranking_weight=0, degradation_weight=0)
    loss, logits, parts = a3_loss(model, x, y, cfg, generator=torch.Generator().manual_seed(0))
    from robustlab.attacks import pgd

    adv = pgd(model, x, y, eps=8 / 255, steps=3, step_size=2 / 255, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.functional.cross_entropy(model(adv), y)
    assert parts == {"base": pytest.approx(expected.item())} and torch.equal(logits, model(adv))


def test_train_a3_keeps_best_pgd20_state_and_step_decay() -> None:
    gen = torch.Generator().manual_seed(0)
    images, labels = torch.rand(48, 3, 8, 8, generator=gen), torch.arange(48) % 4
    data = ArrayDataset(images, labels, class_names=list("abcd"), name="random")
    model = tiny()
    attach(model, ["net.stage2"])
    cfg = A3LossConfig(steps=2)
    result = train_a3(model, data, val_data=data, epochs=4, lr=0.05, milestones=(0.5,), batch_size=16,
                      loss_config=cfg)  # fmt: skip
    assert [h["lr"] for h in result.history] == pytest.approx([0.05, 0.05, 0.005, 0.005])
    assert not model.training and result.added_parameters == 8
    best = max(h["val_pgd20"] for h in result.history)
    assert result.best_pgd20 == best and result.history[result.best_epoch - 1]["val_pgd20"] == best
    assert set(result.history[0]["parts"]) == {"base", "contrastive", "ranking", "degradation"}
    assert "net.a3.blocks.net__stage2.logits" in result.best_state
    with pytest.raises(ValueError, match="milestones"):
        train_a3(model, data, epochs=2, milestones=(1.5,))


def test_registered_as_a_method() -> None:
    from robustlab.methods import METHODS

    assert METHODS.get("a3") is a3.train_a3
