"""Grouped statistics and design-rule verdicts on hand-made rows."""

from __future__ import annotations

import pytest

from robustlab.metrics.noise_study import design_rule_verdicts, grouped_stats

ROWS = [
    {"stem_kernel": 7, "input_size": 224, "global_pool": "avg", "pretraining": "supervised", "rank_difference": 3},
    {"stem_kernel": 7, "input_size": 224, "global_pool": "avg", "pretraining": "supervised", "rank_difference": 1},
    {"stem_kernel": 3, "input_size": 384, "global_pool": "max", "pretraining": "clip", "rank_difference": -2},
    {"stem_kernel": 3, "input_size": 384, "global_pool": "unknown", "pretraining": "clip", "rank_difference": -2},
]


def test_grouped_stats_mean_std_and_unknown_skipped() -> None:
    stats = grouped_stats(ROWS, "global_pool")
    assert [(s["group"], s["n"], s["mean"]) for s in stats] == [("avg", 2, 2.0), ("max", 1, -2.0)]
    assert stats[0]["std"] == pytest.approx(2**0.5)
    with pytest.raises(ValueError, match="missing"):
        grouped_stats(ROWS, "missing")


def test_design_rules_held_and_flipped() -> None:
    assert design_rule_verdicts(ROWS) == {"larger stem kernel": "held", "smaller input resolution": "held",
                                          "average pooling over max pooling": "held",
                                          "supervised ViT over CLIP ViT": "held"}  # fmt: skip
    flipped = [{**r, "rank_difference": -r["rank_difference"]} for r in ROWS]
    assert set(design_rule_verdicts(flipped).values()) == {"not held"}
    assert design_rule_verdicts(ROWS[:1])["larger stem kernel"] == "untestable"


def test_rules_are_judged_within_each_dataset() -> None:
    from robustlab.metrics.noise_study import analysis_tables

    # inside each dataset the smaller input is more robust; pooled across datasets the sizes confound datasets
    rows = [
        {"dataset": "small", "noise_at": "input", "input_size": 32, "rank_difference": 1, "drop": 0.1},
        {"dataset": "small", "noise_at": "input", "input_size": 48, "rank_difference": -1, "drop": 0.2},
        {"dataset": "big", "noise_at": "pixels", "input_size": 224, "rank_difference": 1, "drop": 0.1},
        {"dataset": "big", "noise_at": "pixels", "input_size": 260, "rank_difference": -1, "drop": 0.3},
    ]
    assert design_rule_verdicts(rows)["smaller input resolution"] == "not held"  # the pooled, confounded view
    _, verdicts = analysis_tables(rows)
    assert verdicts["smaller input resolution"] == "held (big, small)"
    rows[3]["rank_difference"], rows[2]["rank_difference"] = 1, -1
    assert analysis_tables(rows)[1]["smaller input resolution"].startswith("mixed (big: not held, small: held")
