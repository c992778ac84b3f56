"""Corruption metrics of ImageNet-C / CIFAR-10-C: CE, mCE, relative CE / mCE, unnormalised mean error.

Definitions (shared/REFERENCE.md): with E(f, c, s) the top-1 error at severity s,
CE(f, c) = Σ_s E(f, c, s) / Σ_s E(base, c, s); relative CE uses errors minus the clean error on both sides;
mCE averages CE over the 15 test corruptions. CIFAR-10-C's "mCE" is unnormalised: the mean error over 15 x 5.
All functions return fractions (0.767 means 76.7 %). Inputs are name-keyed, so corruption order never matters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from robustlab._registry import close_matches_message
from robustlab.metrics.baselines import ALEXNET_CE_NORMALISERS, ALEXNET_CLEAN_ERROR
from robustlab.perturb._profiles import TEST_CORRUPTIONS

Errors = Sequence[float]
"""Top-1 errors at severities 1..5 (any number of severities, the same for model and baseline)."""
Baseline = Mapping[str, "float | Sequence[float]"]
"""Per corruption: the baseline's per-severity errors, or their mean (the CE normaliser)."""


def _mean_error(errors: float | Sequence[float], what: str) -> float:
    if isinstance(errors, (int, float)):
        values = [float(errors)]
    else:
        values = [float(e) for e in errors]
        if not values:
            raise ValueError(f"{what}: no errors given")
    for v in values:
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{what}: errors are fractions in [0, 1], got {v!r} (divide percentages by 100)")
    return sum(values) / len(values)


def corruption_error(errors: Errors, baseline: float | Errors) -> float:
    """CE of one corruption: the model's summed error over the baseline's summed error.

    Args:
        errors: the model's top-1 error at each severity.
        baseline: the baseline's errors at the same severities, or their mean.

    Returns:
        CE as a fraction (1.0 = as bad as the baseline).

    Raises:
        ValueError: errors outside [0, 1], an empty list, a zero baseline, or severity counts that differ.
    """
    if not isinstance(baseline, (int, float)) and len(baseline) != len(errors):
        raise ValueError(f"{len(errors)} model errors but {len(baseline)} baseline errors; give the same severities")
    denominator = _mean_error(baseline, "baseline")
    if denominator == 0:
        raise ValueError("baseline error is 0; CE is undefined")
    return _mean_error(errors, "errors") / denominator


def relative_corruption_error(
    errors: Errors, clean_error: float, baseline: float | Errors, baseline_clean_error: float = ALEXNET_CLEAN_ERROR
) -> float:
    """Relative CE: Σ_s (E_s − E_clean) / Σ_s (E_base_s − E_base_clean).

    Raises:
        ValueError: bad errors, or a baseline no worse under corruption than clean.
    """
    if not isinstance(baseline, (int, float)) and len(baseline) != len(errors):
        raise ValueError(f"{len(errors)} model errors but {len(baseline)} baseline errors; give the same severities")
    gap = _mean_error(baseline, "baseline") - _mean_error(baseline_clean_error, "baseline_clean_error")
    if gap <= 0:
        raise ValueError("the baseline's corruption error does not exceed its clean error; relative CE is undefined")
    return (_mean_error(errors, "errors") - _mean_error(clean_error, "clean_error")) / gap


def _select(errors: Mapping[str, Errors], baseline: Baseline | None, corruptions: Sequence[str]) -> list[str]:
    missing = [c for c in corruptions if c not in errors]
    if missing:
        raise ValueError(f"errors are missing corruptions {missing}; mCE needs all of {list(corruptions)}")
    if baseline is not None:
        for c in corruptions:
            if c not in baseline:
                raise ValueError(close_matches_message("baseline corruption", c, list(baseline)))
    return list(corruptions)


def mean_corruption_error(
    errors: Mapping[str, Errors],
    baseline: Baseline | None = ALEXNET_CE_NORMALISERS,
    *,
    corruptions: Sequence[str] = TEST_CORRUPTIONS,
) -> float:
    """mCE: the mean CE over ``corruptions`` (default: the 15 test corruptions; extra keys are ignored).

    Args:
        errors: per corruption, the model's errors at each severity.
        baseline: per corruption, the baseline's errors or their mean (default: AlexNet on ImageNet-C). ``None``
            gives the unnormalised mean error used for CIFAR-10-C / CIFAR-100-C.
        corruptions: which corruptions enter the mean; pass the validation group to report it separately.

    Returns:
        mCE as a fraction (ResNet-50 on ImageNet-C: 0.767).

    Raises:
        ValueError: a corruption missing from ``errors`` or ``baseline``, or bad error values.
    """
    names = _select(errors, baseline, corruptions)
    if baseline is None:
        return unnormalized_mean_corruption_error(errors, corruptions=names)
    return sum(corruption_error(errors[c], baseline[c]) for c in names) / len(names)


def relative_mean_corruption_error(
    errors: Mapping[str, Errors],
    clean_error: float,
    baseline: Baseline = ALEXNET_CE_NORMALISERS,
    baseline_clean_error: float = ALEXNET_CLEAN_ERROR,
    *,
    corruptions: Sequence[str] = TEST_CORRUPTIONS,
) -> float:
    """Relative mCE: the mean relative CE over ``corruptions``; arguments as :func:`mean_corruption_error`."""
    names = _select(errors, baseline, corruptions)
    return sum(
        relative_corruption_error(errors[c], clean_error, baseline[c], baseline_clean_error) for c in names
    ) / len(names)


def unnormalized_mean_corruption_error(
    errors: Mapping[str, Errors], *, corruptions: Sequence[str] = TEST_CORRUPTIONS
) -> float:
    """CIFAR-10-C style "mCE": the plain mean error over every corruption and severity (RobustBench's corruption
    accuracy is 1 minus this)."""
    names = _select(errors, None, corruptions)
    values: list[float] = []
    for c in names:
        error = errors[c]
        values.extend([error] if isinstance(error, (int, float)) else error)
    return _mean_error(values, "errors")
