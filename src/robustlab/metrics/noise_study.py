"""Attribute-vs-robustness analysis of the noise study: grouped RankDiff / accuracy drop and the four design rules.

Pure functions on stored rows (the results frame and the stored architecture attributes), shared by the report and
``robustlab study analyze``.
"""

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


NOISE_PERTURBATIONS = ("gaussian_noise_pixels", "gaussian_noise_sigma")
ANALYSED_ATTRIBUTES = ("stem_kernel", "input_size", "global_pool", "pretraining", "min_std")


def native_input_attribute(dataset: str) -> str:
    """The stored attribute name saying whether a model takes ``dataset``'s images at their native size.

    ``robustlab study noise`` writes it (True: no resize, so noise on the model's input *is* noise on the native
    pixels) so that :func:`noise_rows` can label such sweeps by what the noise actually hit.
    """
    return f"native_input:{dataset}"


def noise_rows(results: Any, attributes: Mapping[str, Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Per (model, dataset, noise placement): accuracy per σ, slope, drop and RankDiff, from stored cells.

    ``results`` is :meth:`robustlab.store.Store.results` (a DataFrame). Noise on native pixels
    (``gaussian_noise_pixels``, σ = 0 stored as its clean level) and after the resize (``gaussian_noise_sigma``,
    clean from the ``clean`` cell) are kept apart. A ``gaussian_noise_sigma`` sweep of a model whose stored
    attributes say it takes the dataset at its native size (:func:`native_input_attribute`) had no resize to come
    after, so it is labelled and ranked with the ``pixels`` sweeps. RankDiff and the drop are taken at the largest σ
    that every model of the group was run at, so models swept over different grids are still compared on one level.

    Args:
        results: the stored cells.
        attributes: the store's attributes (:meth:`robustlab.store.Store.attributes`); without them every
            ``gaussian_noise_sigma`` sweep is labelled ``input``.

    Returns:
        Dicts with ``model, dataset, noise_at, sigmas, accuracy, clean, top_sigma, noisy, drop, slope,
        rank_difference`` (RankDiff None for a model alone in its group).
    """
    import json

    from robustlab.metrics import rank_difference, robustness_slope

    attributes = attributes or {}
    df = results[(results["metric"] == "accuracy") & (results["split"] == "test")] if len(results) else results
    # (dataset, placement) -> model -> σ -> accuracy; placement is where the noise landed, not the store's name
    groups: dict[tuple[str, str], dict[str, dict[float, float]]] = {}
    for perturbation in NOISE_PERTURBATIONS:
        noisy = df[df["perturbation"] == perturbation]
        for dataset, group in noisy.groupby("dataset", sort=True):
            per_model: dict[str, dict[float, float]] = {}
            for r in group.itertuples(index=False):
                per_model.setdefault(r.model, {})[float(json.loads(r.params_json)["sigma"])] = float(r.value)
            if perturbation == "gaussian_noise_sigma":
                clean = df[(df["perturbation"] == "clean") & (df["dataset"] == dataset)]
                for r in clean.itertuples(index=False):
                    if r.model in per_model:
                        per_model[r.model][0.0] = float(r.value)
            for model, acc in per_model.items():
                native = attributes.get(model, {}).get(native_input_attribute(str(dataset))) is True
                placement = "pixels" if perturbation == "gaussian_noise_pixels" or native else "input"
                groups.setdefault((str(dataset), placement), {}).setdefault(model, acc)
    rows: list[dict[str, Any]] = []
    for (dataset, placement), found in sorted(groups.items()):
        per_model = {m: acc for m, acc in found.items() if 0.0 in acc and len(acc) >= 2}
        if not per_model:
            continue
        common = set.intersection(*(set(acc) for acc in per_model.values())) - {0.0}
        top = max(common) if common else None
        ranks: dict[str, int] = {}
        if top is not None and len(per_model) > 1:
            ranks = rank_difference({m: a[0.0] for m, a in per_model.items()},
                                    {m: a[top] for m, a in per_model.items()})  # fmt: skip
        for model, acc in sorted(per_model.items()):
            sigmas = sorted(acc)
            level = top if top is not None else sigmas[-1]
            rows.append({
                "model": model, "dataset": dataset, "noise_at": placement,
                "sigmas": sigmas, "accuracy": [acc[s] for s in sigmas], "clean": acc[0.0], "top_sigma": level,
                "noisy": acc[level], "drop": acc[0.0] - acc[level],
                "slope": robustness_slope(sigmas, [acc[s] for s in sigmas]), "rank_difference": ranks.get(model),
            })  # fmt: skip
    return rows


def with_attributes(rows: Sequence[Mapping[str, Any]], attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Join noise rows with each model's attributes (``unknown`` where absent).

    Args:
        rows: from :func:`noise_rows`.
        attributes: per model, a name -> value mapping (as the store holds them) or an object with the attributes
            as fields (:class:`~robustlab.study.attributes.Attributes`).

    Returns:
        Copies of ``rows`` with the analysed attributes added.
    """
    out = []
    for row in rows:
        attrs = attributes.get(row["model"])
        joined = dict(row)
        for name in (*ANALYSED_ATTRIBUTES, "family", "stem_stride", "antialiased", "num_params"):
            if isinstance(attrs, Mapping):
                joined[name] = attrs.get(name, "unknown")
            else:
                joined[name] = getattr(attrs, name, "unknown") if attrs is not None else "unknown"
        out.append(joined)
    return out


def analysis_tables(rows: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Grouped RankDiff and accuracy-drop statistics per attribute, and the design-rule verdicts, for joined rows.

    Attributes with no known value in ``rows`` are left out of the grouped table.
    """
    grouped: list[dict[str, Any]] = []
    for attribute in ANALYSED_ATTRIBUTES:
        for value in ("rank_difference", "drop"):
            try:
                stats = grouped_stats(rows, attribute, value)
            except ValueError:
                continue
            grouped.extend({**s, "value": value} for s in stats)
    return grouped, _verdicts_within_datasets([r for r in rows if r.get("rank_difference") is not None])


def _verdicts_within_datasets(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Design-rule verdicts judged inside each (dataset, noise placement) group, then combined.

    RankDiff only compares models evaluated on the same data, so a rule is never judged across datasets (32-px
    CIFAR models against 224-px ImageNet models would confound resolution with everything else). Combined:
    ``"held"`` / ``"not held"`` when every group where the rule is testable agrees, ``"mixed"`` otherwise, with
    the groups named in brackets; ``"untestable"`` when no group can test it.
    """
    groups: dict[tuple[Any, Any], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row.get("dataset"), row.get("noise_at")), []).append(row)
    per_group = {key: design_rule_verdicts(group) for key, group in sorted(groups.items(), key=str)}
    out = {}
    for rule in DESIGN_RULES:
        tested = {key: v[rule] for key, v in per_group.items() if v[rule] != "untestable"}
        if not tested:
            out[rule] = "untestable"
            continue
        kinds = set(tested.values())
        verdict = kinds.pop() if len(kinds) == 1 else "mixed"
        where = ", ".join(f"{ds}: {v}" if verdict == "mixed" else str(ds) for (ds, _), v in tested.items())
        out[rule] = f"{verdict} ({where})"
    return out
