"""Metric functions on hand-computed tables and published values."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from robustlab.metrics import (
    ALEXNET_CE_NORMALISERS,
    ALEXNET_CLEAN_ERROR,
    ALEXNET_ERRORS,
    accuracy,
    attack_success_rate,
    corruption_error,
    error,
    flip_probability,
    flip_rate,
    mean_corruption_error,
    mean_flip_rate,
    rank_difference,
    relative_mean_corruption_error,
    robust_accuracy,
    robustness_slope,
    top5_distance,
    unnormalized_mean_corruption_error,
)
from robustlab.perturb import TEST_CORRUPTIONS, VALIDATION_CORRUPTIONS


def _alexnet_own_errors() -> dict[str, list[float]]:
    errors = {name: list(values) for name, values in ALEXNET_ERRORS.items()}
    errors["jpeg_compression"] = [ALEXNET_CE_NORMALISERS["jpeg_compression"]] * 5  # per-severity not published
    return errors


def test_normalisers_are_the_severity_means() -> None:
    for name, values in ALEXNET_ERRORS.items():
        assert sum(values) / 5 == pytest.approx(ALEXNET_CE_NORMALISERS[name], abs=1e-6)
    assert set(ALEXNET_CE_NORMALISERS) == set(TEST_CORRUPTIONS)


def test_alexnet_against_itself_gives_100() -> None:
    errors = _alexnet_own_errors()
    assert mean_corruption_error(errors) == pytest.approx(1.0)
    assert relative_mean_corruption_error(errors, ALEXNET_CLEAN_ERROR) == pytest.approx(1.0)
    # against its per-severity table too (where published)
    per_sev = {k: v for k, v in ALEXNET_ERRORS.items()}
    names = list(per_sev)
    assert mean_corruption_error(errors, per_sev, corruptions=names) == pytest.approx(1.0)


def test_hand_computed_ce_and_relative_ce() -> None:
    # errors 0.2..0.6 (mean 0.4) against a baseline whose mean is 0.8, clean 0.1 vs baseline clean 0.4
    assert corruption_error([0.2, 0.3, 0.4, 0.5, 0.6], 0.8) == pytest.approx(0.5)
    assert corruption_error([0.2, 0.3, 0.4, 0.5, 0.6], [0.8] * 5) == pytest.approx(0.5)
    errors = {c: [0.2, 0.3, 0.4, 0.5, 0.6] for c in TEST_CORRUPTIONS}
    baseline = {c: 0.8 for c in TEST_CORRUPTIONS}
    assert mean_corruption_error(errors, baseline) == pytest.approx(0.5)
    assert relative_mean_corruption_error(errors, 0.1, baseline, 0.4) == pytest.approx((0.4 - 0.1) / (0.8 - 0.4))


def test_cifar_mce_is_the_plain_mean_and_order_never_matters() -> None:
    rs = random.Random(0)
    errors = {c: [rs.random() for _ in range(5)] for c in TEST_CORRUPTIONS}
    flat = [e for c in TEST_CORRUPTIONS for e in errors[c]]
    assert mean_corruption_error(errors, None) == pytest.approx(sum(flat) / 75)
    assert unnormalized_mean_corruption_error(errors) == pytest.approx(sum(flat) / 75)
    shuffled = dict(reversed(list(errors.items())))
    assert mean_corruption_error(shuffled) == mean_corruption_error(errors)
    # extra (validation) corruptions never enter the 15-corruption mCE
    with_extra = dict(errors, speckle_noise=[1.0] * 5)
    assert mean_corruption_error(with_extra) == mean_corruption_error(errors)


def test_validation_group_separately_and_errors() -> None:
    errors = {c: [0.5] * 5 for c in VALIDATION_CORRUPTIONS}
    assert mean_corruption_error(errors, None, corruptions=VALIDATION_CORRUPTIONS) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="baseline corruption"):
        mean_corruption_error(errors, corruptions=VALIDATION_CORRUPTIONS)  # AlexNet has no validation baseline
    with pytest.raises(ValueError, match="missing corruptions"):
        mean_corruption_error({"fog": [0.1] * 5})
    with pytest.raises(ValueError, match="percentages"):
        corruption_error([50.0] * 5, 0.8)
    with pytest.raises(ValueError, match="same severities"):
        corruption_error([0.1] * 5, [0.2] * 4)


def test_accuracy_error_and_probability_warning() -> None:
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    labels = torch.tensor([0, 1, 1])
    assert accuracy(logits, labels) == pytest.approx(2 / 3)
    assert error(logits.argmax(1), labels) == pytest.approx(1 / 3)
    with pytest.warns(UserWarning, match="probabilities"):
        accuracy(logits.softmax(1), labels)
    with pytest.raises(ValueError, match="int64"):
        accuracy(logits, labels.int())


def test_flip_probability_noise_vs_temporal() -> None:
    preds = torch.tensor([[0, 1, 1, 1], [2, 2, 3, 2]])
    # temporal: pairs (0,1)(1,1)(1,1) -> 1 flip; (2,2)(2,3)(3,2) -> 2 flips; 3 of 6
    assert flip_probability(preds, noise=False) == pytest.approx(3 / 6)
    # noise: against frame 1: 1,1,1 ; 0,1,0 -> 4 of 6
    assert flip_probability(preds, noise=True) == pytest.approx(4 / 6)
    assert flip_rate(0.2, 0.4) == pytest.approx(0.5)
    assert mean_flip_rate({"a": 0.2, "b": 0.4}) == pytest.approx(0.3)
    assert mean_flip_rate({"a": 0.2, "b": 0.4}, {"a": 0.4, "b": 0.4}) == pytest.approx(0.75)


def _top5_reference(logits: np.ndarray, noise: bool) -> float:
    # the definition written out with explicit loops, independently of the vectorised version
    per_video = []
    for video in logits:
        ranks = [np.argsort(np.argsort(-frame, kind="stable"), kind="stable") for frame in video]
        dists = []
        ref = ranks[0]
        for t in range(1, len(video)):
            old_top = np.argsort(ref, kind="stable")[:5]
            d = sum(abs(k - min(ranks[t][c], 5)) for k, c in enumerate(old_top))
            dists.append(d)
            if not noise:
                ref = ranks[t]
        per_video.append(np.mean(dists))
    return float(np.mean(per_video))


@pytest.mark.parametrize("noise", [True, False])
def test_top5_distance_matches_the_definition(noise: bool) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 6, 12, generator=g)
    logits[:, 3] = logits[:, 2] + 0.01 * torch.randn(4, 12, generator=g)  # a nearly unchanged frame
    assert top5_distance(logits, noise=noise) == pytest.approx(_top5_reference(logits.numpy(), noise))
    same = logits[:, :1].expand(4, 5, 12)
    assert top5_distance(same, noise=noise) == 0.0


def test_robust_accuracy_is_worst_case_and_success_rate() -> None:
    clean = torch.tensor([True, True, True, False])
    pgd = torch.tensor([True, False, True, False])
    fab = torch.tensor([True, True, False, True])
    assert robust_accuracy(torch.stack([clean, pgd, fab])) == pytest.approx(0.25)
    assert robust_accuracy([clean, pgd]) == pytest.approx(0.5)
    assert attack_success_rate(clean, pgd) == pytest.approx(1 / 3)
    assert math.isnan(attack_success_rate(torch.zeros(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool)))


def test_slope_and_rank_difference() -> None:
    assert robustness_slope([0.0, 0.1, 0.2], [0.9, 0.7, 0.5]) == pytest.approx(-2.0)
    with pytest.raises(ValueError, match="two distinct"):
        robustness_slope([0.1, 0.1], [0.5, 0.4])
    clean = {"a": 0.9, "b": 0.8, "c": 0.7}
    noisy = {"a": 0.3, "b": 0.6, "c": 0.5}
    assert rank_difference(clean, noisy) == {"a": 1 - 3, "b": 2 - 1, "c": 3 - 2}
    with pytest.raises(ValueError, match="models differ"):
        rank_difference(clean, {"a": 0.1})
