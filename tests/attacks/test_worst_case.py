"""worst_case: the AutoAttack cascade attacks only still-robust points and its accuracies never rise."""

from __future__ import annotations

import functools

import pytest
import torch
from attacks_helpers import gen, images, linear_classifier
from torch import nn

from robustlab.attacks import ATTACKS, WorstCaseResult, apgd, apgd_t, autoattack, fgsm, pgd, square, worst_case


def _predict(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


class _Recorder:
    """An attack that records what it was given and delegates to PGD."""

    def __init__(self, **params) -> None:
        self.params = params
        self.calls: list[tuple[torch.Tensor, object]] = []
        self.__name__ = "recorder"

    def __call__(self, model, images, labels, *, generator=None, **params):
        self.calls.append((images.clone(), generator))
        return pgd(model, images, labels, generator=generator, **{**self.params, **params})


def test_cascade_attacks_only_still_robust_points(resnet20) -> None:
    x = images(16, seed=10)
    y = _predict(resnet20, x)
    y[:3] = (y[:3] + 1) % 10  # three clean mistakes
    first, second = _Recorder(eps=3 / 255, steps=3), _Recorder(eps=8 / 255, steps=3)
    result = worst_case(resnet20, x, y, [first, second], generator=[gen(i) for i in range(16)])
    assert isinstance(result, WorstCaseResult)
    assert result.stages == ("clean", "recorder", "recorder")
    # stage 1 saw exactly the clean-correct images, stage 2 exactly those stage 1 did not fool
    (seen1, gens1), (seen2, _) = first.calls[0], second.calls[0]
    assert torch.equal(seen1, x[3:])
    assert len(gens1) == 13 and gens1[0] is not None
    survivors = (result.fooled_at == -1) | (result.fooled_at == 2)
    assert torch.equal(seen2, x[survivors])
    acc = result.accuracies
    assert acc[0] == 13 / 16
    assert all(b <= a for a, b in zip(acc, acc[1:], strict=False))
    assert acc[-1] < acc[0]
    assert result.robust_accuracy == acc[-1] == float(result.robust.double().mean())
    # the recorded adversarial images really fool the model; robust and clean-wrong images keep the clean image
    fooled = result.fooled_at > 0
    assert bool((_predict(resnet20, result.adversarial[fooled]) != y[fooled]).all())
    assert torch.equal(result.adversarial[~fooled], x[~fooled])
    assert torch.equal(result.fooled_at[:3], torch.zeros(3, dtype=torch.int64))
    assert float((result.adversarial - x).abs().max()) <= 8 / 255 + 1e-6


def test_names_params_and_per_sample_tensors(linear) -> None:
    x = images(8, size=8, seed=11)
    y = _predict(linear, x)
    init = torch.zeros_like(x)
    result = worst_case(linear, x, y, ["fgsm", ("pgd", {"eps": 0.02, "steps": 2, "init": init})], generator=gen())
    assert result.stages == ("clean", "fgsm", "pgd:eps=0.02,steps=2")
    assert result.as_dict()["clean"] == 1.0
    assert list(result.as_dict()) == ["clean", "fgsm", "pgd:eps=0.02,steps=2"]
    assert worst_case(linear, x, y, ["fgsm", "fgsm"]).as_dict().keys() == {"clean", "fgsm", "fgsm#2"}
    # a partial keeps the wrapped function's name; a single spec needs no list
    single = worst_case(linear, x, y, functools.partial(fgsm, eps=0.01))
    assert single.stages == ("clean", "fgsm")
    assert worst_case(linear, x, y, ("fgsm", {"eps": 0.01})).accuracies == single.accuracies


def test_nothing_left_to_attack(linear) -> None:
    x = images(4, size=8, seed=12)
    y = (_predict(linear, x) + 1) % 10  # every clean prediction is wrong
    recorder = _Recorder(steps=1)
    result = worst_case(linear, x, y, [recorder])
    assert recorder.calls == []
    assert result.accuracies == (0.0, 0.0) and not result.robust.any()


def test_worst_case_leaves_model_and_grads_alone(linear) -> None:
    x = images(4, size=8)
    y = _predict(linear, x)
    worst_case(linear, x, y, ["fgsm", "pgd"], generator=gen())
    assert not linear.training and all(p.grad is None for p in linear.parameters())


def test_errors(linear) -> None:
    x, y = images(4, size=8), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match="attacks is empty"):
        worst_case(linear, x, y, [])
    with pytest.raises(ValueError, match="Did you mean 'pgd'"):
        worst_case(linear, x, y, ["pgdd"])
    with pytest.raises(ValueError, match="must be a registered name"):
        worst_case(linear, x, y, [3])
    with pytest.raises(ValueError, match="pass generator= to worst_case"):
        worst_case(linear, x, y, [("pgd", {"generator": gen()})])
    with pytest.raises(ValueError, match="returned"):
        worst_case(linear, x, _predict(linear, x), [lambda model, images, labels, generator=None: images[:1]])
    with pytest.raises(ValueError, match="got 2 generators for a batch of 4"):
        worst_case(linear, x, y, ["pgd"], generator=[gen(), gen()])


def test_autoattack_is_the_cascade_of_apgd_ce_apgd_t_fab_t_and_square() -> None:
    assert ATTACKS.get("autoattack") is autoattack
    model = linear_classifier(size=8, seed=3)
    x = images(32, 8, seed=4)
    y = model(x).argmax(1)
    eps = 2 / 255
    adv = autoattack(model, x, y, eps=eps, steps=10, n_targets=3, queries=50, generator=gen(0))
    assert float((adv - x).abs().amax()) <= eps + 1e-6

    def robust(a: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(a).argmax(1) == y

    # no weaker than its first stage, which runs on the same images with the same streams, nor than the others
    first = robust(apgd(model, x, y, eps=eps, steps=10, generator=gen(0)))
    assert int(robust(adv).sum()) <= int(first.sum())
    for later in (apgd_t(model, x, y, eps=eps, steps=10, n_targets=3, generator=gen(0)),
                  square(model, x, y, eps=eps, queries=50, generator=gen(0))):  # fmt: skip
        assert int(robust(adv).sum()) <= int(robust(later).sum()) + 2  # other random streams: a little slack
    with pytest.raises(ValueError, match="fab must be True or False"):
        autoattack(model, x, y, fab="yes")


def test_autoattack_under_l2_leaves_out_square() -> None:
    model = linear_classifier(size=8, seed=3)
    x = images(8, 8, seed=4)
    y = model(x).argmax(1)
    calls: list[int] = []
    model.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    adv = autoattack(model, x, y, eps=0.1, norm="l2", steps=5, n_targets=2, queries=10_000, generator=gen(0))
    assert float(torch.linalg.vector_norm((adv - x).flatten(1), dim=1).max()) <= 0.1 + 1e-5
    assert len(calls) < 200  # APGD-CE, APGD-T, FAB-T only; a 10,000-query Square would have called it far more


def test_autoattack_fits_its_targets_to_models_with_few_classes() -> None:
    x = images(6, 8, seed=1)
    for classes in (3, 5):
        model = linear_classifier(size=8, seed=2, classes=classes)
        bare = model.net.eval()  # no num_classes attribute: the count comes from one forward
        for m in (model, nn.Sequential(nn.Identity(), bare).eval()):
            y = model(x).argmax(1)
            adv = autoattack(m, x, y, eps=4 / 255, steps=3, queries=5, generator=gen(0))
            assert float((adv - x).abs().amax()) <= 4 / 255 + 1e-6
