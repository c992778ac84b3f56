"""Headline numbers and labels of an evaluation, computed from its stored cells with the metric library.

They work on what the results store holds (a key and a value per cell), so the engine, the CLI and the report
share one definition of every headline number.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Protocol

from robustlab.metrics import (
    mean_corruption_error,
    mean_flip_rate,
    relative_mean_corruption_error,
    robustness_slope,
    unnormalized_mean_corruption_error,
)
from robustlab.perturb._profiles import TEST_CORRUPTIONS, VALIDATION_CORRUPTIONS
from robustlab.perturb.sequences import TEST_SEQUENCES

# the benchmark's corruption groups are part of what these numbers mean; the report reads them from here
__all__ = ["TEST_CORRUPTIONS", "VALIDATION_CORRUPTIONS", "attack_label", "summarize"]


class _Key(Protocol):
    # read-only, so frozen dataclasses (the store's ResultKey) match
    @property
    def metric(self) -> str: ...

    @property
    def perturbation(self) -> str: ...

    @property
    def severity(self) -> int: ...

    @property
    def params_json(self) -> str: ...


class _Cell(Protocol):
    @property
    def key(self) -> _Key: ...

    @property
    def value(self) -> float: ...


def attack_label(params_json: str) -> str:
    """A short name for an attack setting from its stored parameters: ``eps=8/255 linf steps=20 loss=dlr``.

    It names what tells two settings of one attack apart in a table: radius, norm, budget (steps or queries), loss,
    restarts when more than one, and a targeted run.

    Args:
        params_json: the cell's stored parameters (JSON object).

    Returns:
        The label; empty for parameters that name none of these.
    """
    params = json.loads(params_json)
    parts = []
    eps = params.get("eps")
    if isinstance(eps, (int, float)):
        on_grid = abs(eps * 255 - round(eps * 255)) < 1e-6 and params.get("norm", "linf") == "linf"
        parts.append(f"eps={round(eps * 255)}/255" if on_grid else f"eps={eps:g}")
    parts += [str(params["norm"])] if "norm" in params else []
    parts += [f"{key}={params[key]}" for key in ("steps", "queries", "loss") if key in params]
    parts += [f"restarts={params['restarts']}"] if params.get("restarts", 1) != 1 else []
    parts += ["targeted"] if params.get("targeted") is True else []
    return " ".join(parts)


def summarize(cells: Iterable[_Cell]) -> dict[str, float]:
    """Clean accuracy, corruption errors and the noise slope from accuracy cells.

    Args:
        cells: objects with ``key`` (a :class:`robustlab.store.ResultKey` or anything with its ``metric``,
            ``perturbation``, ``severity`` and ``params_json``) and ``value``, e.g. the results of
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
        key = cell.key
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
