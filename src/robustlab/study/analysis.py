"""The noise study's analysis written as CSV (the analysis itself lives in :mod:`robustlab.metrics.noise_study`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def write_analysis_csv(rows: Sequence[Mapping[str, Any]], path: Any) -> None:
    """One row per model: accuracies per σ (``acc@σ`` columns), slope, drop, RankDiff and attributes."""
    import csv
    from pathlib import Path

    sigmas = sorted({s for r in rows for s in r["sigmas"]})
    skip = {"sigmas", "accuracy"}
    base = [k for k in (rows[0] if rows else {}) if k not in skip]
    with Path(path).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*base, *(f"acc@{s:g}" for s in sigmas)])
        writer.writeheader()
        for r in rows:
            line = {k: v for k, v in r.items() if k not in skip}
            line.update({f"acc@{s:g}": a for s, a in zip(r["sigmas"], r["accuracy"], strict=True)})
            writer.writerow(line)
