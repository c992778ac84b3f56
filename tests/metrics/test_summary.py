"""Headline numbers and labels from stored cells, and the confidence interval of an accuracy."""

from __future__ import annotations

import pytest

from robustlab.metrics import wilson_interval
from robustlab.metrics.summary import attack_label


def test_attack_labels_tell_settings_of_one_attack_apart() -> None:
    ce = attack_label('{"eps": 0.03137254901960784, "norm": "linf", "steps": 100, "loss": "ce", "restarts": 1}')
    dlr = attack_label('{"eps": 0.03137254901960784, "norm": "linf", "steps": 100, "loss": "dlr", "restarts": 1}')
    assert ce == "eps=8/255 linf steps=100 loss=ce" and dlr == "eps=8/255 linf steps=100 loss=dlr"
    assert attack_label('{"eps": 0.5, "norm": "l2", "steps": 20, "restarts": 3, "targeted": true}') == (
        "eps=0.5 l2 steps=20 restarts=3 targeted"
    )
    assert attack_label('{"eps": 0.0078431372549019607, "queries": 5000, "loss": "margin", "targeted": false}') == (
        "eps=2/255 queries=5000 loss=margin"
    )


def test_wilson_interval_matches_the_closed_form_and_stays_in_range() -> None:
    # reference values: scipy.stats.binomtest(k, n).proportion_ci(method="wilson")
    assert wilson_interval(0.5, 10) == pytest.approx((0.236593090512564, 0.7634069094874361))
    assert wilson_interval(0.93, 100) == pytest.approx((0.8625048526092649, 0.9656807389327273))
    assert wilson_interval(0.912, 500) == pytest.approx((0.8839235279346098, 0.933794015525071))
    low, high = wilson_interval(0.0, 10)  # never empty at 0 %: a robust accuracy of 0/10 is not certainty
    assert low == 0.0 and high == pytest.approx(0.27753279986288926)
    assert wilson_interval(1.0, 1)[1] == 1.0
    narrow, wide = wilson_interval(0.8, 10_000), wilson_interval(0.8, 100)
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 9  # the width shrinks as 1/sqrt(n)
    with pytest.raises(ValueError, match="n >= 1"):
        wilson_interval(0.5, 0)
    with pytest.raises(ValueError, match="divide percentages"):
        wilson_interval(91.2, 100)
