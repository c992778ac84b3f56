"""A3 (reconstructed): the module's invariants, attach / detach, modes, checkpoints, losses and one training run."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robustlab.data import ArrayDataset
from robustlab.methods import a3
from robustlab.methods.a3 import (
    A3Config,
    A3LossConfig,
    A3Module,
    a3_loss,
    a3_mode,
    a3_scale,
    added_parameters,
    attach,
    default_layers,
    degradation_loss,
    detach,
    get_attachment,
    info_nce_loss,
    magnitude_factor,
    ranking_loss,
    set_mode,
    train_a3,
)
from robustlab.models import Classifier, create_model, save_checkpoint


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one thread, and far faster when other processes share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _TinyNet(nn.Module):
    """Two ReLU stages (the first with BatchNorm, so there are running statistics to disturb), GAP, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1, stride=2), nn.ReLU())
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.stage2(self.stage1(x)).mean(dim=(2, 3)))


def _tiny(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    return Classifier(_TinyNet(), mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(3, 8, 8),
                      class_names=list("abcd"), name="tiny").eval()  # fmt: skip


def _images(n: int = 6, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _switch_some_channels_on(model: nn.Module) -> None:
    with torch.no_grad():
        for block in get_attachment(model).modules_in_order():
            block.logits.copy_(torch.linspace(-2, 2, block.channels))


# --- the module -------------------------------------------------------------------------------------------------


def test_attenuation_exactly_inverts_amplification_for_the_same_mask_and_factor() -> None:
    a = torch.rand(3, 5, 4, 4, generator=torch.Generator().manual_seed(1)) * 3
    mask = torch.tensor([1.0, 0.0, 1.0, 0.3, 0.0])
    factor = magnitude_factor(a)
    amplified = a3_scale(a, mask, factor, +1.0, beta=1.5)
    restored = a3_scale(amplified, mask, factor, -1.0, beta=1.5)
    torch.testing.assert_close(restored, a, rtol=1e-6, atol=1e-7)
    # amplification scales masked channels up by exactly exp(beta * s), leaves unmasked channels alone
    torch.testing.assert_close(amplified[:, 0], a[:, 0] * torch.exp(1.5 * factor).view(3, 1, 1))
    assert torch.equal(amplified[:, 1], a[:, 1])
    assert bool((amplified >= a).all()) and bool((a3_scale(a, mask, factor, -1.0) <= a).all())


def test_magnitude_factor_values() -> None:
    # all mass in the top 10 %: s = 0; evenly spread mass: the top 10 % hold a tenth of it, s = log 10
    peaked = torch.zeros(1, 1, 10, 10)
    peaked[0, 0, 0, :10] = 1.0
    uniform = torch.ones(1, 1, 10, 10)
    zero = torch.zeros(1, 1, 10, 10)
    s = magnitude_factor(torch.cat([peaked, uniform, zero]))
    torch.testing.assert_close(s, torch.tensor([0.0, math.log(10), 0.0]))
    spread = torch.arange(1, 101, dtype=torch.float32).view(1, 1, 10, 10)
    expected = math.log(5050 / sum(range(91, 101)))  # the top 10 entries are 91..100
    assert magnitude_factor(spread).item() == pytest.approx(expected, rel=1e-6)
    assert magnitude_factor(spread, percentile=0.5).item() == pytest.approx(math.log(5050 / sum(range(51, 101))))
    # gradients flow through both sums: entries outside the top get 1/sum(a), those inside 1/sum(a) - 1/top
    x = spread.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(magnitude_factor(x).sum(), x)
    flat = grad.flatten()
    assert flat[0].item() == pytest.approx(1 / 5050) and flat[-1].item() == pytest.approx(1 / 5050 - 1 / 955)


def test_inference_mask_is_hard_and_training_mask_is_relaxed() -> None:
    block = A3Module(4, A3Config(tau=0.1))
    with torch.no_grad():
        block.logits.copy_(torch.tensor([-3.0, -0.1, 0.1, 3.0]))
    block.eval()
    assert torch.equal(block.mask(5), torch.tensor([0.0, 0.0, 1.0, 1.0]))
    block.train()
    block.generator = torch.Generator().manual_seed(0)
    soft = block.mask(2000)
    assert soft.shape == (2000, 4) and bool(((soft >= 0) & (soft <= 1)).all())
    # P(on) = sigmoid(theta) for a Gumbel-sigmoid; tau = 0.1 makes the draws nearly binary
    on_rate = (soft > 0.5).float().mean(dim=0)
    torch.testing.assert_close(on_rate, torch.sigmoid(block.logits.detach()), atol=0.04, rtol=0)
    assert float(((soft > 0.05) & (soft < 0.95)).float().mean()) < 0.2


def test_fixed_random_mask_and_no_factor_options() -> None:
    block = A3Module(64, A3Config(fixed_mask=True), generator=torch.Generator().manual_seed(3))
    assert not block.logits.requires_grad
    block.train()
    assert torch.equal(block.mask(2)[0], block.mask(2)[1])  # no noise: the same 0/1 mask every time
    assert 10 < int(block.mask(1).sum()) < 54
    plain = A3Module(2, A3Config(use_factor=False, init_logit=5.0)).eval()
    a = torch.rand(1, 2, 3, 3)
    torch.testing.assert_close(plain(a, mode="amplify"), a * math.e)


def test_config_errors_name_the_setting() -> None:
    for kwargs, match in [({"tau": 0}, "tau"), ({"threshold": 1.0}, "threshold"), ({"percentile": 90}, "percentile"),
                          ({"beta": -1}, "beta")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            A3Config(**kwargs)
    with pytest.raises(ValueError, match="Did you mean 'trades'"):
        A3LossConfig(at="trade")
    with pytest.raises(ValueError, match="steps"):
        A3LossConfig(steps=0)


# --- attach / detach / modes ------------------------------------------------------------------------------------


def test_detached_model_is_bit_identical_to_the_original() -> None:
    model = _tiny()
    x = _images()
    with torch.no_grad():
        before = model(x)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        attach(model, ["net.stage1", "net.stage2"])
        _switch_some_channels_on(model)
        assert not torch.equal(model(x), before)  # attached and attenuating: a different function
        with a3_mode(model, "off"):
            assert torch.equal(model(x), before)
        detach(model)
        assert torch.equal(model(x), before)
    assert model.state_dict().keys() == state.keys() and added_parameters(model) == 0
    assert get_attachment(model) is None
    with pytest.raises(ValueError, match="no A3 attached"):
        detach(model)


def test_eval_mode_is_deterministic_and_modes_switch_and_restore() -> None:
    model = _tiny()
    attach(model, ["stage2"])  # "stage2" is accepted for "net.stage2"
    _switch_some_channels_on(model)
    x = _images()
    with torch.no_grad():
        first, second = model(x), model(x)
        assert torch.equal(first, second)
        with a3_mode(model, "amplify"):
            amplified = model(x)
        assert torch.equal(model(x), first)  # mode restored
        set_mode(model, "off")
        plain = model(x)
        set_mode(model, "attenuate")
    assert not torch.equal(amplified, plain) and not torch.equal(first, plain)
    with pytest.raises(ValueError, match="Did you mean 'amplify'"):
        set_mode(model, "amplfy")


def test_a_deep_copy_applies_its_own_modules() -> None:
    import copy

    model = _tiny()
    attach(model, ["net.stage2"])
    _switch_some_channels_on(model)
    twin = copy.deepcopy(model)
    x = _images()
    with torch.no_grad():
        assert torch.equal(twin(x), model(x))
        get_attachment(twin).modules_in_order()[0].logits.fill_(-5.0)  # all channels off in the copy only
        set_mode(twin, "off")
        plain = twin(x)
        set_mode(twin, "attenuate")
        assert torch.equal(twin(x), plain) and not torch.equal(model(x), plain)
    detach(twin)
    assert get_attachment(model) is not None


def test_added_parameters_are_one_logit_per_channel() -> None:
    model = _tiny()
    base = sum(p.numel() for p in model.parameters())
    attach(model, ["net.stage1", "net.stage2"])
    assert added_parameters(model) == 6 + 8
    assert sum(p.numel() for p in model.parameters()) == base + 14


def test_unknown_layer_and_bad_attachments_raise_clear_errors() -> None:
    model = _tiny()
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
        a3_loss(_tiny(), _images(), torch.zeros(6, dtype=torch.long))


def test_default_layers_pick_the_last_stages() -> None:
    resnet = create_model("cifar:resnet20", pretrained=False)
    assert default_layers(resnet) == ["net.layer3"]
    assert default_layers(resnet, 2) == ["net.layer2", "net.layer3"]
    assert default_layers(_tiny(), 2) == ["net.stage1", "net.stage2"]
    attach(resnet)
    assert added_parameters(resnet) == 64


def test_checkpoint_round_trip_reattaches_a3(tmp_path) -> None:
    model = create_model("cifar:small_cnn", pretrained=False)
    attach(model, stages=2, config=A3Config(beta=0.5, use_factor=False))
    _switch_some_channels_on(model)
    x = torch.rand(2, 3, 32, 32)
    for name in ("a3.pt", "a3.safetensors"):
        save_checkpoint(model, tmp_path / name)
        loaded = create_model(f"file:{tmp_path / name}")
        attachment = get_attachment(loaded)
        assert attachment is not None and attachment.layers == get_attachment(model).layers
        assert attachment.config == A3Config(beta=0.5, use_factor=False)
        with torch.no_grad():
            assert torch.equal(loaded(x), model(x))
    detach(model)
    save_checkpoint(model, tmp_path / "plain.pt")
    assert get_attachment(create_model(f"file:{tmp_path / 'plain.pt'}")) is None


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
    model = _tiny()
    attach(model, ["net.stage2"])
    _switch_some_channels_on(model)
    model.train()
    x, y = _images(8), torch.arange(8) % 4
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
    model = _tiny()
    x, y = _images(8), torch.arange(8) % 4
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
    model = _tiny()
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
