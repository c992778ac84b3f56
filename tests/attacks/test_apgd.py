"""Auto-PGD: the paper's checkpoints, the eps-ball, batch independence, strength against PGD, and errors."""

from __future__ import annotations

import pytest
import torch
from attacks_helpers import gen, images, linear_classifier

from robustlab import rng
from robustlab.attacks import ATTACKS, apgd, apgd_checkpoints, apgd_t, pgd, worst_case


def test_checkpoints_follow_the_papers_sequence() -> None:
    # p = 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (Croce & Hein 2020, section 3.2)
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(1) == []
    assert all(0 < w < 50 for w in apgd_checkpoints(50))
    assert ATTACKS.get("apgd") is apgd


@pytest.mark.parametrize(("norm", "eps"), [("linf", 8 / 255), ("l2", 0.5)])
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_stays_in_the_ball_and_the_unit_box(norm: str, eps: float, loss: str) -> None:
    model = linear_classifier(size=8)
    x = images(6, 8)
    y = torch.arange(6)
    adv = apgd(model, x, y, eps=eps, steps=12, norm=norm, loss=loss, generator=gen(1))
    delta = (adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else torch.linalg.vector_norm(delta, dim=1)
    assert bool((size <= eps + 1e-5).all())
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    assert adv.shape == x.shape and adv.dtype == x.dtype


def test_an_image_does_not_depend_on_its_batch(resnet20) -> None:
    x, y = images(3, 32, seed=2), torch.tensor([1, 4, 7])
    together = apgd(resnet20, x, y, steps=6, generator=rng.sample_generators(0, [5, 6, 7], "apgd"))
    alone = apgd(resnet20, x[1:2], y[1:2], steps=6, generator=rng.sample_generators(0, [6], "apgd"))
    torch.testing.assert_close(together[1:2], alone, atol=1e-6, rtol=0)


def test_fools_the_linear_model_at_least_as_often_as_pgd_with_the_same_budget() -> None:
    model = linear_classifier(size=8, seed=3)
    x = images(64, 8, seed=4)
    y = model(x).argmax(1)  # every image starts correctly classified
    eps = 1 / 255
    with torch.no_grad():
        pgd_acc = float((model(pgd(model, x, y, eps=eps, steps=20, generator=gen(0))).argmax(1) == y).float().mean())
        apgd_acc = float((model(apgd(model, x, y, eps=eps, steps=20, generator=gen(0))).argmax(1) == y).float().mean())
    assert 0.0 < pgd_acc < 1.0  # the budget leaves something to compare
    assert apgd_acc <= pgd_acc


def test_targeted_apgd_reaches_the_targets_of_the_linear_model() -> None:
    model = linear_classifier(size=8)
    x = images(8, 8, seed=5)
    y = model(x).argmax(1)
    target = (y + 1) % 10
    adv = apgd(model, x, y, eps=0.5, steps=20, loss="dlr", targeted=True, target_labels=target, generator=gen(2))
    assert bool((model(adv).argmax(1) == target).all())


def test_runs_inside_a_worst_case_cascade_by_name(resnet20) -> None:
    x, y = images(4, 32, seed=6), torch.tensor([0, 1, 2, 3])
    result = worst_case(
        resnet20, x, y, [("apgd", {"steps": 5}), ("apgd", {"steps": 5, "loss": "dlr"})], generator=gen(0)
    )
    assert result.stages[1].startswith("apgd") and len(result.accuracies) == 3
    assert list(result.accuracies) == sorted(result.accuracies, reverse=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"restarts": 0}, "restarts"), ({"rho": 0.0}, "rho"), ({"rho": 1.5}, "rho"), ({"steps": 0}, "steps"),
     ({"loss": "hinge"}, "loss"), ({"eps": -1.0}, "eps")],
)  # fmt: skip
def test_bad_arguments_are_refused_by_name(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        apgd(linear_classifier(size=8), images(2, 8), torch.tensor([0, 1]), **kwargs)


def test_fooled_images_leave_the_batch_and_keep_their_fooling_iterate() -> None:
    model = linear_classifier(size=8, seed=3)
    x = images(32, 8, seed=4)
    y = model(x).argmax(1)
    seen: list[int] = []
    model.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[0]))
    adv = apgd(model, x, y, eps=2 / 255, steps=30, generator=gen(0))
    calls = seen[seen.index(32) :]  # after the model checks' small probes: the start point, then one call a step
    with torch.no_grad():
        fooled = int((model(adv).argmax(1) != y).sum())
    assert 0 < fooled < 32  # some fall, some stand
    assert len(calls) == 31 and calls == sorted(calls, reverse=True)  # the batch only shrinks ...
    assert calls[-1] == 32 - fooled  # ... to the images still standing: the fallen cost nothing more


def test_apgd_t_attacks_correct_images_through_the_next_classes() -> None:
    assert ATTACKS.get("apgd_t") is apgd_t
    model = linear_classifier(size=8, seed=3)
    x = images(32, 8, seed=4)
    y = model(x).argmax(1)
    y[:4] = (y[:4] + 1) % 10  # four images start misclassified: they are not attacked
    eps = 2 / 255
    adv = apgd_t(model, x, y, eps=eps, steps=20, n_targets=3, generator=gen(0))
    assert torch.equal(adv[:4], x[:4])
    assert float((adv - x).abs().amax()) <= eps + 1e-6 and float(adv.min()) >= 0 and float(adv.max()) <= 1
    with torch.no_grad():
        wrong = model(adv).argmax(1) != y
        moved = (adv != x).flatten(1).any(1)
    assert bool((moved[4:] == wrong[4:]).all())  # a correct image is changed exactly when it was broken
    assert 0 < int(wrong[4:].sum()) < 28
    # more target classes can only break more images (each run starts where the earlier ones stopped)
    more = apgd_t(model, x, y, eps=eps, steps=20, n_targets=6, generator=gen(0))
    with torch.no_grad():
        assert int((model(more).argmax(1) != y).sum()) >= int(wrong.sum())


def test_apgd_t_does_not_depend_on_the_batch(resnet20) -> None:
    x, y = images(3, 32, seed=2), torch.tensor([1, 4, 7])
    with torch.no_grad():
        y = resnet20(x).argmax(1)  # correct, so every image is attacked
    together = apgd_t(resnet20, x, y, steps=4, n_targets=2, generator=rng.sample_generators(0, [5, 6, 7], "t"))
    alone = apgd_t(resnet20, x[1:2], y[1:2], steps=4, n_targets=2, generator=rng.sample_generators(0, [6], "t"))
    torch.testing.assert_close(together[1:2], alone, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("kwargs", "match"), [({"n_targets": 0}, "n_targets"), ({"n_targets": 10}, "n_targets")])
def test_apgd_t_refuses_impossible_targets(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        apgd_t(linear_classifier(size=8), images(2, 8), torch.tensor([0, 1]), **kwargs)
    with pytest.raises(ValueError, match="at least 4 classes"):
        apgd_t(linear_classifier(size=8, classes=3), images(2, 8), torch.tensor([0, 1]), n_targets=1)
