"""Attribute-vs-robustness analysis (seed 004): grouped RankDiff / accuracy drop and the four design rules."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

# The paper's four rules: (attribute, preferred side, other side, description). "Preferred" should show the
# higher mean RankDiff if the rule holds on the data.
DESIGN_RULES: dict[str, tuple[str, str]] = {
    "larger stem kernel": ("stem_kernel", "larger"),
    "smaller input resolution": ("input_size", "smaller"),
    "average pooling over max pooling": ("global_pool", "avg>max"),
    "supervised ViT over CLIP ViT": ("pretraining", "supervised>clip"),
}


def grouped_stats(rows: Sequence[Mapping[str, Any]], attribute: str, value: str = "rank_difference") -> list[dict]:
    """Mean, std, min, max and count of ``value`` per distinct ``attribute`` value (unknown values skipped).

    Args:
        rows: one mapping per model holding ``attribute`` and ``value``.

    Raises:
        ValueError: no row holds both keys.
    """
    groups: dict[Any, list[float]] = {}
    for row in rows:
        if attribute in row and value in row and row[attribute] != "unknown" and row[value] is not None:
            groups.setdefault(row[attribute], []).append(float(row[value]))
    if not groups:
        raise ValueError(f"no row has both {attribute!r} and {value!r}")
    out = []
    for key in sorted(groups, key=str):
        v = groups[key]
        out.append({"attribute": attribute, "group": key, "n": len(v), "mean": statistics.fmean(v),
                    "std": statistics.stdev(v) if len(v) > 1 else 0.0, "min": min(v), "max": max(v)})  # fmt: skip
    return out


def design_rule_verdicts(rows: Sequence[Mapping[str, Any]], value: str = "rank_difference") -> dict[str, str]:
    """Each rule as ``"held"``, ``"not held"`` or ``"untestable"`` (fewer than two groups) on these rows.

    Ordered attributes (stem kernel, resolution) compare the mean of the upper and lower half split at the
    median; categorical ones compare the two named groups' means. Both filters need a strictly higher mean.
    """
    verdicts = {}
    for rule, (attribute, side) in DESIGN_RULES.items():
        # the CLIP rule is about ViTs: compare only ViT rows where the family is known
        scope = [r for r in rows if attribute != "pretraining" or r.get("family", "vit") == "vit"]
        pairs = [(r[attribute], float(r[value])) for r in scope
                 if r.get(attribute, "unknown") != "unknown" and r.get(value) is not None]  # fmt: skip
        if ">" in side:
            good, bad = side.split(">")
            a = [v for k, v in pairs if k == good]
            b = [v for k, v in pairs if k == bad]
        else:
            keys = sorted({k for k, _ in pairs})
            if len(keys) < 2:
                verdicts[rule] = "untestable"
                continue
            median = statistics.median(k for k, _ in pairs)
            high = [v for k, v in pairs if k > median]
            low = [v for k, v in pairs if k <= median]
            a, b = (high, low) if side == "larger" else (low, high)
        if not a or not b:
            verdicts[rule] = "untestable"
        else:
            verdicts[rule] = "held" if statistics.fmean(a) > statistics.fmean(b) else "not held"
    return verdicts
