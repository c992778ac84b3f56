"""Headline numbers of an evaluation, computed from its cells with the metric library."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from robustlab.metrics import (
    mean_corruption_error,
    mean_flip_rate,
    relative_mean_corruption_error,
    robustness_slope,
    unnormalized_mean_corruption_error,
)
from robustlab.perturb import TEST_CORRUPTIONS, VALIDATION_CORRUPTIONS
from robustlab.perturb.sequences import TEST_SEQUENCES
from robustlab.store import ResultKey


def summarize(cells: Iterable[Any]) -> dict[str, float]:
    """Clean accuracy, corruption errors and the noise slope from accuracy cells.

    Args:
        cells: objects with ``key`` (:class:`ResultKey`) and ``value`` (accuracy), e.g. the results of
            :func:`robustlab.engine.evaluate`.

    Returns:
        Whichever of these the cells support: ``clean_accuracy``; ``mean_corruption_error`` (unnormalised mean over
        the 15 test corruptions x their severities, the CIFAR-10-C convention); ``mce`` and ``relative_mce``
        (AlexNet-normalised, only for the imagenet profile, where the AlexNet table applies, and only with all five
        severities); ``validation_mean_error``; ``mean_flip_probability`` (raw mean over the test sequences
        present); ``noise_slope`` (accuracy per unit σ, clean included as σ = 0).
    """
    clean: float | None = None
    errors: dict[str, dict[int, float]] = defaultdict(dict)
    profiles: set[str] = set()
    noise: dict[float, float] = {}
    flips: dict[str, float] = {}
    for cell in cells:
        key: ResultKey = cell.key
        if key.metric == "flip_probability" and key.perturbation in TEST_SEQUENCES:
            flips[key.perturbation] = float(cell.value)
        if key.metric != "accuracy":
            continue
        params = json.loads(key.params_json)
        if key.perturbation == "clean":
            clean = float(cell.value)
        elif key.perturbation in TEST_CORRUPTIONS or key.perturbation in VALIDATION_CORRUPTIONS:
            errors[key.perturbation][key.severity] = 1.0 - float(cell.value)
            profiles.add(params.get("profile") or "auto")
        elif key.perturbation == "gaussian_noise_sigma":
            noise[float(params["sigma"])] = float(cell.value)
    out: dict[str, float] = {}
    if clean is not None:
        out["clean_accuracy"] = clean
    table = {c: [errors[c][s] for s in sorted(errors[c])] for c in errors}
    if all(c in table for c in TEST_CORRUPTIONS):
        out["mean_corruption_error"] = unnormalized_mean_corruption_error(table)
        full = all(sorted(errors[c]) == [1, 2, 3, 4, 5] for c in TEST_CORRUPTIONS)
        if full and profiles == {"imagenet"}:
            out["mce"] = mean_corruption_error(table)
            if clean is not None:
                out["relative_mce"] = relative_mean_corruption_error(table, 1.0 - clean)
    if all(c in table for c in VALIDATION_CORRUPTIONS):
        out["validation_mean_error"] = unnormalized_mean_corruption_error(table, corruptions=VALIDATION_CORRUPTIONS)
    if flips:
        # without AlexNet's flip probabilities (unpublished in code) this is the raw mean, not mFR
        out["mean_flip_probability"] = mean_flip_rate(flips)
    if noise:
        levels = dict(noise)
        if clean is not None:
            levels.setdefault(0.0, clean)
        if len(levels) >= 2:
            sigmas = sorted(levels)
            out["noise_slope"] = robustness_slope(sigmas, [levels[s] for s in sigmas])
    return out
