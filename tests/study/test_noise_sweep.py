"""Noise sweep over models: stored cells, resume adds nothing, slope and rank difference, clear errors."""

from __future__ import annotations

import pytest

from robustlab.metrics import rank_difference, robustness_slope
from robustlab.store import Store
from robustlab.study.noise import noise_study, parse_sigmas


def test_parse_sigmas_adds_clean_sorts_and_rejects_bad_values() -> None:
    assert parse_sigmas("0.08,0.04") == [0.0, 0.04, 0.08]
    assert parse_sigmas([0, 0.1, 0.1]) == [0.0, 0.1]
    for bad, match in (("0,-0.1", ">= 0"), ("0,abc", "comma-separated"), ("0", "at least one"), ("nan", ">= 0")):
        with pytest.raises(ValueError, match=match):
            parse_sigmas(bad)


def test_slope_and_rank_difference_on_hand_made_data() -> None:
    assert robustness_slope([0, 0.1, 0.2], [0.9, 0.8, 0.7]) == pytest.approx(-1.0)
    clean = {"a": 0.9, "b": 0.8, "c": 0.7}
    noisy = {"a": 0.2, "b": 0.6, "c": 0.5}  # a collapses under noise
    assert rank_difference(clean, noisy) == {"a": -2, "b": 1, "c": 1}


def test_noise_study_stores_cells_and_resume_adds_nothing(tmp_path) -> None:
    kwargs = {"n": 24, "batch_size": 24, "pretrained": False, "device": "cpu"}
    with Store(tmp_path / "r.db") as store:
        first = noise_study(["cifar:small_cnn"], "digits", "0,0.1,0.3", store=store, **kwargs)
        again = noise_study(["cifar:small_cnn"], "digits", "0,0.1,0.3", store=store, **kwargs)
    assert first.new_cells == 3 and again.new_cells == 0
    assert first.accuracy == again.accuracy and first.sigmas == [0.0, 0.1, 0.3]
    acc = first.accuracy["cifar:small_cnn"]
    assert len(acc) == 3 and all(0 <= a <= 1 for a in acc)
    assert first.slope["cifar:small_cnn"] == pytest.approx(robustness_slope(first.sigmas, acc))


def test_noise_study_rejects_unknown_model_and_bad_noise_at(tmp_path) -> None:
    with Store(tmp_path / "r.db") as store:
        with pytest.raises(ValueError, match="resnet20"):
            noise_study(["cifar:resnet2O"], "digits", "0,0.1", store=store, n=4, pretrained=False)
        with pytest.raises(ValueError, match="noise_at"):
            noise_study(["cifar:small_cnn"], "digits", "0,0.1", store=store, noise_at="logits")
