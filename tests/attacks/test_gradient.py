"""FGSM and PGD: torchattacks equivalence, eps-ball and range invariants, targets, side effects, determinism."""

from __future__ import annotations

import pytest
import torch
from attacks_helpers import gen, images, linear_classifier

from robustlab.attacks import ATTACKS, DEFAULT_EPS, dlr_loss, fgsm, list_attacks, pgd


def _labels(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


def _accuracy(model, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).double().mean())


def _linf_start(x: torch.Tensor, eps: float, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)  # torchattacks draws its start from the global generator
    return torch.empty_like(x).uniform_(-eps, eps)


def _l2_start(x: torch.Tensor, eps: float, seed: int) -> torch.Tensor:
    # torchattacks.PGDL2's start: Gaussian direction, radius U(0, 1) * eps, drawn in this order
    torch.manual_seed(seed)
    delta = torch.empty_like(x).normal_()
    norms = delta.view(x.shape[0], -1).norm(p=2, dim=1).view(-1, 1, 1, 1)
    radius = torch.zeros_like(norms).uniform_(0, 1)
    return delta * (radius / norms * eps)


# --- equivalence with torchattacks -------------------------------------------------------------------------------


@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_linf_equals_torchattacks(resnet20, targeted: bool) -> None:
    torchattacks = pytest.importorskip("torchattacks")
    x, y = images(8), torch.arange(8) % 10
    eps, alpha, steps = 8 / 255, 2 / 255, 10
    target = (y + 3) % 10
    init = _linf_start(x, eps, seed=1)
    reference = torchattacks.PGD(resnet20, eps=eps, alpha=alpha, steps=steps)
    if targeted:
        reference.set_mode_targeted_by_function(lambda images, labels: (labels + 3) % 10)
    torch.manual_seed(1)
    expected = reference(x, y)
    ours = pgd(
        resnet20,
        x,
        y,
        eps=eps,
        step_size=alpha,
        steps=steps,
        init=init,
        targeted=targeted,
        target_labels=target if targeted else None,
    )
    assert torch.allclose(ours, expected, rtol=0, atol=1e-6)
    assert not resnet20.training


def test_pgd_l2_equals_torchattacks(resnet20) -> None:
    torchattacks = pytest.importorskip("torchattacks")
    x, y = images(8, seed=3), torch.arange(8) % 10
    eps, alpha, steps = 0.5, 0.1, 10
    init = _l2_start(x, eps, seed=2)
    torch.manual_seed(2)
    expected = torchattacks.PGDL2(resnet20, eps=eps, alpha=alpha, steps=steps)(x, y)
    ours = pgd(resnet20, x, y, norm="l2", eps=eps, step_size=alpha, steps=steps, init=init)
    assert torch.allclose(ours, expected, rtol=0, atol=1e-6)


def test_fgsm_equals_torchattacks(resnet20) -> None:
    torchattacks = pytest.importorskip("torchattacks")
    x, y = images(8, seed=4), torch.arange(8) % 10
    expected = torchattacks.FGSM(resnet20, eps=8 / 255)(x, y)
    assert torch.allclose(fgsm(resnet20, x, y), expected, rtol=0, atol=1e-6)


def test_defaults_are_the_literature_budgets(linear) -> None:
    assert DEFAULT_EPS == {"linf": 8 / 255, "l2": 0.5}
    x = images(4, size=8)
    y = _labels(linear, x)
    # default step 2.5 * eps / steps = torchattacks' alpha 2/255 at eps 8/255, 10 steps
    start = torch.zeros_like(x)
    assert torch.equal(pgd(linear, x, y, init=start), pgd(linear, x, y, init=start, eps=8 / 255, step_size=2 / 255))
    fgsm_step = fgsm(linear, x, y)
    inside = (x > 8 / 255) & (x < 1 - 8 / 255)
    assert torch.allclose((fgsm_step - x).abs()[inside], torch.full_like(x[inside], 8 / 255), atol=1e-6)


# --- invariants --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("loss", ["ce", "dlr"])
@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_outputs_in_eps_ball_and_unit_range(resnet20, attack: str, norm: str, loss: str) -> None:
    x, y = images(6, seed=5), torch.arange(6) % 10
    eps = {"linf": 4 / 255, "l2": 0.3}[norm]
    # a large step forces the projection to do work in every step
    params = {"steps": 4, "step_size": 4 * eps} if attack == "pgd" else {}
    out = ATTACKS.get(attack)(resnet20, x, y, eps=eps, norm=norm, loss=loss, generator=gen(1), **params)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    delta = (out - x).flatten(1)
    size = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)
    assert bool((size <= eps * (1 + 1e-5) + 1e-7).all())
    assert float(size.max()) > 0.5 * eps  # the attack moved


def test_projection_of_an_oversized_init(linear) -> None:
    x = images(4, size=8)
    y = _labels(linear, x)
    big = torch.full_like(x, 0.5)
    out = pgd(linear, x, y, eps=0.1, steps=1, step_size=0.0, init=big)
    assert torch.allclose(out, (x + 0.1).clamp(0, 1), atol=1e-6)
    out = pgd(linear, x, y, norm="l2", eps=0.2, steps=1, step_size=0.0, init=big)
    assert float((out - x).flatten(1).norm(dim=1).max()) <= 0.2 + 1e-6


def test_eps_zero_returns_the_clean_images(linear) -> None:
    x = images(4, size=8)
    y = _labels(linear, x)
    for norm in ("linf", "l2"):
        assert torch.equal(pgd(linear, x, y, eps=0.0, norm=norm, generator=gen()), x)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_targeted_attacks_reach_their_targets(norm: str) -> None:
    model = linear_classifier(seed=1)
    x = 0.25 + 0.5 * images(16, size=8, seed=2)
    y = _labels(model, x)
    target = (y + 1 + torch.arange(16) % 9) % 10
    eps = {"linf": 0.25, "l2": 4.0}[norm]
    out = pgd(model, x, y, eps=eps, steps=30, norm=norm, targeted=True, target_labels=target, generator=gen(3))
    assert torch.equal(_labels(model, out), target)
    # the untargeted attack with the same budget just leaves the true class
    away = _labels(model, pgd(model, x, y, eps=eps, steps=30, norm=norm, generator=gen(3)))
    assert not torch.equal(away, target) and bool((away != y).all())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_targeted_dlr_lifts_the_target_over_the_true_class(norm: str) -> None:
    # targeted DLR maximises z_t - z_y (AutoAttack), so the target beats the true class; it need not be the top one
    model = linear_classifier(seed=1)
    x = 0.25 + 0.5 * images(16, size=8, seed=2)
    y = _labels(model, x)
    target = (y + 1 + torch.arange(16) % 9) % 10
    eps = {"linf": 0.1, "l2": 2.0}[norm]
    out = pgd(
        model, x, y, eps=eps, steps=20, norm=norm, loss="dlr", targeted=True, target_labels=target, generator=gen(3)
    )
    with torch.no_grad():
        before, after = model(x), model(out)
    rows = torch.arange(16)
    assert bool((before[rows, target] < before[rows, y]).all())
    assert bool((after[rows, target] > after[rows, y]).all())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_accuracy_never_rises_and_stronger_attacks_hurt_more(resnet20, norm: str) -> None:
    x = images(16, seed=6)
    y = _labels(resnet20, x)
    y[:4] = (y[:4] + 1) % 10  # some clean mistakes too
    eps = {"linf": 4 / 255, "l2": 0.5}[norm]
    clean = _accuracy(resnet20, x, y)
    one_step = _accuracy(resnet20, fgsm(resnet20, x, y, eps=eps, norm=norm), y)
    many = _accuracy(resnet20, pgd(resnet20, x, y, eps=eps, norm=norm, steps=10, generator=gen()), y)
    assert clean == 0.75
    assert many <= one_step <= clean
    assert many < clean


def test_early_stop_returns_fooling_iterates_and_is_at_least_as_strong(resnet20) -> None:
    x = images(12, seed=7)
    y = _labels(resnet20, x)
    eps = 3 / 255  # fools about half of them
    last = pgd(resnet20, x, y, eps=eps, steps=8, generator=gen(4))
    early = pgd(resnet20, x, y, eps=eps, steps=8, generator=gen(4), early_stop=True)
    assert float((early - x).abs().max()) <= eps + 1e-6 and 0 <= float(early.min()) and float(early.max()) <= 1
    assert _accuracy(resnet20, early, y) <= _accuracy(resnet20, last, y)
    assert 0.0 < _accuracy(resnet20, early, y) < 1.0
    # images never fooled run every step, as without early stopping
    robust = _labels(resnet20, early) == y
    assert torch.allclose(early[robust], last[robust], atol=1e-6)


# --- side effects ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("training", [False, True])
def test_mode_and_parameter_grads_untouched(training: bool) -> None:
    model = linear_classifier(seed=2)
    x = images(4, size=8)
    y = _labels(model, x)
    weight = model.net[1].weight
    weight.grad = torch.full_like(weight, 3.0)  # a training step's gradient in flight
    model.net[1].bias.grad = None
    model.train(training)
    with pytest.warns(UserWarning, match="train mode") if training else _no_warning():
        pgd(model, x, y, steps=3, generator=gen())
        fgsm(model, x, y, loss="dlr")
    assert model.training is training
    assert torch.equal(weight.grad, torch.full_like(weight, 3.0))
    assert model.net[1].bias.grad is None


class _no_warning:
    def __enter__(self) -> None:
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc: object) -> None:
        self._catch.__exit__(*exc)


def test_runs_under_no_grad_and_inference_mode(linear) -> None:
    x = images(4, size=8)
    y = _labels(linear, x)
    expected = pgd(linear, x, y, steps=3, generator=gen(5))
    with torch.no_grad():
        assert torch.equal(pgd(linear, x, y, steps=3, generator=gen(5)), expected)
    with torch.inference_mode():
        xi, yi = x.clone(), y.clone()
        assert torch.equal(pgd(linear, xi, yi, steps=3, generator=gen(5)), expected)


def test_inputs_are_not_modified(resnet20) -> None:
    x, y = images(4), torch.arange(4)
    x0, y0 = x.clone(), y.clone()
    pgd(resnet20, x, y, steps=2, generator=gen())
    assert torch.equal(x, x0) and torch.equal(y, y0)


# --- determinism -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_same_seed_same_output(resnet20, norm: str) -> None:
    x, y = images(4), torch.arange(4)
    a = pgd(resnet20, x, y, norm=norm, steps=3, generator=gen(7))
    b = pgd(resnet20, x, y, norm=norm, steps=3, generator=gen(7))
    c = pgd(resnet20, x, y, norm=norm, steps=3, generator=gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_per_sample_generators_make_samples_batch_independent(linear, norm: str) -> None:
    x = images(6, size=8, seed=9)
    y = _labels(linear, x)
    full = pgd(linear, x, y, norm=norm, steps=3, generator=[gen(100 + i) for i in range(6)])
    part = pgd(linear, x[[4, 1]], y[[4, 1]], norm=norm, steps=3, generator=[gen(104), gen(101)])
    assert torch.allclose(part, full[[4, 1]], atol=1e-6)
    # the random start alone (no steps taken) is exactly the sample's own
    start_full = pgd(linear, x, y, norm=norm, steps=1, step_size=0.0, generator=[gen(100 + i) for i in range(6)])
    start_part = pgd(linear, x[[4, 1]], y[[4, 1]], norm=norm, steps=1, step_size=0.0, generator=[gen(104), gen(101)])
    assert torch.equal(start_part, start_full[[4, 1]])


# --- losses ------------------------------------------------------------------------------------------------------


def test_dlr_loss_values() -> None:
    logits = torch.tensor([[4.0, 1.0, 0.0, -1.0], [0.0, 3.0, 1.0, 2.0]])
    labels = torch.tensor([0, 0])
    # correct: -(4 - 1) / (4 - 0); wrong: -(0 - 3) / (3 - 1)
    assert torch.allclose(dlr_loss(logits, labels), torch.tensor([-0.75, 1.5]))
    targets = torch.tensor([2, 1])
    # -(z_y - z_t) / (z_1 - (z_3 + z_4) / 2)
    assert torch.allclose(dlr_loss(logits, labels, targets), torch.tensor([-4 / 4.5, 3 / 2.5]))
    with pytest.raises(ValueError, match="K >= 3"):
        dlr_loss(torch.zeros(2, 2), torch.tensor([0, 1]))


# --- errors ------------------------------------------------------------------------------------------------------


def test_registry_and_uniform_signature(linear) -> None:
    assert list_attacks() == ["apgd", "apgd_t", "autoattack", "fab_t", "fgsm", "patch_fool", "pgd", "square"]
    with pytest.raises(ValueError, match="Did you mean 'pgd'"):
        ATTACKS.get("pdg")
    x = images(2, size=8)
    y = _labels(linear, x)
    for name in ("fgsm", "pgd"):
        assert ATTACKS.get(name)(linear, x, y, generator=None).shape == x.shape


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"norm": "linfinity"}, "Unknown norm 'linfinity'. Did you mean 'linf'"),
        ({"norm": 2}, "norm must be one of"),
        ({"loss": "hinge"}, "Unknown loss 'hinge'"),
        ({"eps": -0.1}, "eps must be a finite number >= 0"),
        ({"eps": float("nan")}, "eps must be"),
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"steps": 2.5}, "steps must be an integer"),
        ({"step_size": -1.0}, "step_size must be"),
        ({"targeted": True}, "targeted=True needs target_labels"),
        ({"target_labels": torch.zeros(4, dtype=torch.int64)}, "pass targeted=True"),
        ({"targeted": True, "target_labels": torch.zeros(3, dtype=torch.int64)}, r"shape \(4,\)"),
        ({"targeted": True, "target_labels": torch.full((4,), 10)}, r"target_labels must lie in \[0, 10\)"),
        ({"init": torch.zeros(4, 3, 8, 7)}, "init must be a float tensor shaped like images"),
        ({"generator": [torch.Generator()]}, "got 1 generators for a batch of 4"),
        ({"generator": "seed"}, "generator must be"),
        ({"random_start": "yes"}, "random_start must be True or False"),
    ],
)
def test_bad_arguments_raise(linear, kwargs: dict, match: str) -> None:
    x, y = images(4, size=8), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match=match):
        pgd(linear, x, y, **kwargs)


def test_bad_images_and_labels_raise(linear) -> None:
    x, y = images(4, size=8), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        pgd(linear, x[0], y)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        fgsm(linear, x * 255, y)
    with pytest.raises(ValueError, match="labels has 3 entries but there are 4 images"):
        pgd(linear, x, y[:3])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        pgd(linear, x, torch.full((4,), 12))
    with pytest.raises(ValueError, match="int64"):
        pgd(linear, x, y.int())
    with pytest.raises(ValueError, match="torch.nn.Module"):
        pgd(lambda z: z, x, y)


def test_label_range_checked_for_plain_modules() -> None:
    net = linear_classifier().net  # a bare nn.Module: the class count comes from its logits
    x = images(4, size=8)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\) \(the model has 10 outputs\)"):
        pgd(net, x, torch.full((4,), 10))


def test_empty_batch(linear) -> None:
    x, y = torch.zeros(0, 3, 8, 8), torch.zeros(0, dtype=torch.int64)
    assert pgd(linear, x, y).shape == (0, 3, 8, 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_follows_the_images_and_draws_the_same_start() -> None:
    model = linear_classifier(seed=3)
    x = images(4, size=8)
    y = _labels(model, x)
    cpu = pgd(model, x, y, steps=1, step_size=0.0, generator=[gen(i) for i in range(4)])
    cuda_model = linear_classifier(seed=3).cuda()
    out = pgd(cuda_model, x.cuda(), y.cuda(), steps=1, step_size=0.0, generator=[gen(i) for i in range(4)])
    assert out.device.type == "cuda"
    assert torch.allclose(out.cpu(), cpu, atol=1e-6)
    adv = pgd(cuda_model, x.cuda(), y.cuda(), steps=3, generator=gen(), early_stop=True)
    assert float((adv.cpu() - x).abs().max()) <= 8 / 255 + 1e-6
