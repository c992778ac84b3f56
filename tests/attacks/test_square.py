"""Square Attack: the schedule, the eps-ball, batch independence, no gradients needed, targets, errors."""

from __future__ import annotations

import pytest
import torch
from attacks_helpers import gen, images, linear_classifier
from torch import nn

from robustlab import rng
from robustlab.attacks import ATTACKS, pgd, square, square_fraction, worst_case
from robustlab.models import Classifier


def test_square_fraction_halves_on_the_authors_schedule() -> None:
    assert ATTACKS.get("square") is square
    assert square_fraction(0, 10_000) == square_fraction(10, 10_000) == 0.8
    assert square_fraction(11, 10_000) == 0.4
    assert square_fraction(8001, 10_000) == 0.8 / 2**9
    # rescaled to shorter runs: the same shares of the run
    assert square_fraction(50, 1000) == square_fraction(500, 10_000)
    assert square_fraction(999, 1000, p_init=0.05) == 0.05 / 2**9


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


@pytest.mark.parametrize("loss", ["margin", "ce"])
def test_stays_in_the_ball_and_lowers_accuracy(loss: str) -> None:
    model = linear_classifier(size=8, seed=3)
    x = images(32, 8, seed=4)
    y = model(x).argmax(1)  # all correct at the start
    eps = 8 / 255  # PGD-20 leaves 9 % here; Square with 1,000 queries 16 %
    adv = square(model, x, y, eps=eps, queries=200, loss=loss, generator=gen(0))
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert float((adv - x).abs().amax()) <= eps + 1e-6
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    assert _accuracy(model, adv, y) < 0.5


def test_an_image_does_not_depend_on_its_batch(resnet20) -> None:
    x, y = images(3, 32, seed=2), torch.tensor([1, 4, 7])
    together = square(resnet20, x, y, queries=80, generator=rng.sample_generators(0, [5, 6, 7], "square"))
    alone = square(resnet20, x[1:2], y[1:2], queries=80, generator=rng.sample_generators(0, [6], "square"))
    torch.testing.assert_close(together[1:2], alone, atol=1e-6, rtol=0)
    again = square(resnet20, x, y, queries=80, generator=rng.sample_generators(0, [5, 6, 7], "square"))
    assert torch.equal(together, again)


class _Quantised(nn.Module):
    """A linear model behind 8-level input quantisation: its input gradient is zero everywhere."""

    def __init__(self, inner: Classifier) -> None:
        super().__init__()
        self.inner = inner
        self.num_classes = inner.num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 8) / 8)


def test_breaks_a_model_whose_gradients_are_masked() -> None:
    model = _Quantised(linear_classifier(size=8, seed=3)).eval()
    x = images(32, 8, seed=4)
    y = model(x).argmax(1)
    eps = 16 / 255
    with pytest.warns(UserWarning, match="all-zero input gradient"):
        after_pgd = _accuracy(model, pgd(model, x, y, eps=eps, steps=10, generator=gen(0)), y)
    after_square = _accuracy(model, square(model, x, y, eps=eps, queries=200, generator=gen(0)), y)
    assert after_square < after_pgd
    assert after_square <= 0.5


def test_targeted_square_reaches_the_targets() -> None:
    model = linear_classifier(size=8, seed=1)
    x = images(8, 8, seed=5)
    y = model(x).argmax(1)
    target = (y + 1) % 10
    adv = square(model, x, y, eps=0.3, queries=300, targeted=True, target_labels=target, generator=gen(2))
    assert bool((model(adv).argmax(1) == target).all())


def test_fooled_images_stop_querying() -> None:
    model = linear_classifier(size=8, seed=3)
    x = images(16, 8, seed=4)
    y = model(x).argmax(1)
    seen: list[int] = []
    model.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[0]))
    square(model, x, y, eps=0.2, queries=50, generator=gen(0))
    calls = seen[seen.index(16) :]
    assert calls == sorted(calls, reverse=True) and len(calls) < 51  # all fall before the budget ends


def test_runs_by_name_in_a_worst_case_cascade(resnet20) -> None:
    x, y = images(4, 32, seed=6), torch.tensor([0, 1, 2, 3])
    result = worst_case(resnet20, x, y, [("apgd", {"steps": 5}), ("square", {"queries": 20})], generator=gen(0))
    assert result.stages[2].startswith("square") and len(result.accuracies) == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"queries": 0}, "queries"), ({"p_init": 0.0}, "p_init"), ({"p_init": 2}, "p_init"), ({"loss": "dlr"}, "loss"),
     ({"eps": -1.0}, "eps"), ({"targeted": True}, "target_labels")],
)  # fmt: skip
def test_bad_arguments_are_refused_by_name(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        square(linear_classifier(size=8), images(2, 8), torch.tensor([0, 1]), **kwargs)


def test_images_of_one_pixel_are_refused() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 10)).eval()
    with pytest.raises(ValueError, match="2 x 2"):
        square(model, torch.rand(2, 3, 1, 1), torch.tensor([0, 1]))
