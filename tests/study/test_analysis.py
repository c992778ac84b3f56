"""Grouped statistics and design-rule verdicts on hand-made rows."""

from __future__ import annotations

import pytest

from robustlab.study.analysis import design_rule_verdicts, grouped_stats

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
