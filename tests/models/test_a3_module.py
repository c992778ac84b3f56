"""A3 (reconstructed) plug-in module: its invariants, attach / detach, modes and checkpoints (moved from
tests/methods/test_a3.py with the code, to models/a3_module.py)."""

from __future__ import annotations

import math

import pytest
import torch

from a3_helpers import images, switch_some_channels_on, tiny
from robustlab.models import create_model, save_checkpoint
from robustlab.models.a3_module import (
    A3Config,
    A3Module,
    a3_mode,
    a3_scale,
    added_parameters,
    attach,
    default_layers,
    detach,
    get_attachment,
    magnitude_factor,
    set_mode,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one thread, and far faster when other processes share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


# --- attach / detach / modes ------------------------------------------------------------------------------------


def test_detached_model_is_bit_identical_to_the_original() -> None:
    model = tiny()
    x = images()
    with torch.no_grad():
        before = model(x)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        attach(model, ["net.stage1", "net.stage2"])
        switch_some_channels_on(model)
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
    model = tiny()
    attach(model, ["stage2"])  # "stage2" is accepted for "net.stage2"
    switch_some_channels_on(model)
    x = images()
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

    model = tiny()
    attach(model, ["net.stage2"])
    switch_some_channels_on(model)
    twin = copy.deepcopy(model)
    x = images()
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
    model = tiny()
    base = sum(p.numel() for p in model.parameters())
    attach(model, ["net.stage1", "net.stage2"])
    assert added_parameters(model) == 6 + 8
    assert sum(p.numel() for p in model.parameters()) == base + 14


def test_default_layers_pick_the_last_stages() -> None:
    resnet = create_model("cifar:resnet20", pretrained=False)
    assert default_layers(resnet) == ["net.layer3"]
    assert default_layers(resnet, 2) == ["net.layer2", "net.layer3"]
    assert default_layers(tiny(), 2) == ["net.stage1", "net.stage2"]
    attach(resnet)
    assert added_parameters(resnet) == 64


def test_checkpoint_round_trip_reattaches_a3(tmp_path) -> None:
    model = create_model("cifar:small_cnn", pretrained=False)
    attach(model, stages=2, config=A3Config(beta=0.5, use_factor=False))
    switch_some_channels_on(model)
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
