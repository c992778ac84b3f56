"""The report's tables, computed from stored rows only: the leaderboard, the adversarial table, the corruption pivot.

Every function takes the long-format frame of :meth:`robustlab.store.Store.results` (one row per cell: ``model,
dataset, split, perturbation, severity, params_json, metric, value, n, seed``) and computes with the metric library;
nothing here builds a model or reads a file. Accuracies carry their sample count, so each becomes an
:class:`Estimate` with a 95 % Wilson interval.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import pandas as pd

from robustlab.metrics import mean_corruption_error, relative_mean_corruption_error, wilson_interval
from robustlab.metrics.summary import TEST_CORRUPTIONS, VALIDATION_CORRUPTIONS, attack_label, summarize

CORRUPTIONS = (*TEST_CORRUPTIONS, *VALIDATION_CORRUPTIONS)

# short names for 80-column tables; each is the start of the benchmark's own name or its usual abbreviation
ABBREVIATIONS: Mapping[str, str] = {
    "gaussian_noise": "gauss", "shot_noise": "shot", "impulse_noise": "impul", "defocus_blur": "defoc",
    "glass_blur": "glass", "motion_blur": "motn", "zoom_blur": "zoom", "snow": "snow", "frost": "frost",
    "fog": "fog", "brightness": "brgt", "contrast": "contr", "elastic_transform": "elast", "pixelate": "pixel",
    "jpeg_compression": "jpeg", "speckle_noise": "speck", "gaussian_blur": "gblur", "spatter": "spat",
    "saturate": "satur",
}  # fmt: skip


@dataclass(frozen=True)
class Estimate:
    """A stored fraction and the number of samples behind it.

    Args:
        value: the fraction (an accuracy, an error or a ratio such as mCE).
        n: samples it was measured on; ``None`` when the store does not say (no interval then).
        note: where it came from when that is not obvious (the attack that gave a worst case).
    """

    value: float
    n: int | None = None
    note: str = ""

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95 % Wilson interval, or ``None`` without ``n`` or for a value outside [0, 1]."""
        if self.n is None or self.n < 1 or not 0.0 <= self.value <= 1.0:
            return None
        return wilson_interval(self.value, self.n)


def _n(value: object) -> int | None:
    """A stored sample count, or None where the store has none (NULL reads back as NA or NaN)."""
    return None if value is None or pd.isna(value) else int(value)  # type: ignore[call-overload]


def _largest_n(rows: pd.DataFrame) -> Estimate | None:
    """The row measured on most samples (a model evaluated twice, on 100 and on 10,000 images, shows the 10,000)."""
    rows = rows[rows["value"].notna()]
    if rows.empty:
        return None
    best = rows.assign(_n=rows["n"].fillna(-1)).sort_values("_n", kind="stable").iloc[-1]
    return Estimate(float(best["value"]), _n(best["n"]))


def eps_label(eps: float, norm: str) -> str:
    """``8/255`` for an L-inf radius on the 1/255 grid, else the number (``0.5``)."""
    if norm == "linf" and abs(eps * 255 - round(eps * 255)) < 1e-6:
        return f"{round(eps * 255)}/255"
    return f"{eps:g}"


def _attack_rows(results: pd.DataFrame, metric: str = "robust_accuracy") -> pd.DataFrame:
    rows = results[(results["metric"] == metric) & results["value"].notna()].copy()
    params = [json.loads(p) for p in rows["params_json"]]
    rows["eps"] = [p.get("eps") if isinstance(p.get("eps"), (int, float)) else math.nan for p in params]
    rows["norm"] = [str(p.get("norm", "linf")) for p in params]
    return rows[rows["eps"].notna()]


def _errors(rows: pd.DataFrame) -> dict[str, dict[int, float]]:
    """Per corruption and severity, the top-1 error of one model's accuracy rows."""
    out: dict[str, dict[int, float]] = {}
    for r in rows[rows["perturbation"].isin(CORRUPTIONS)].itertuples(index=False):
        out.setdefault(r.perturbation, {})[int(r.severity)] = 1.0 - float(r.value)
    return out


def _common(tables: Sequence[dict[str, dict[int, float]]]) -> dict[str, list[int]]:
    """Test corruptions (and their severities) every model was measured on, so rows compare like with like."""
    out = {}
    for name in TEST_CORRUPTIONS:
        severities = set.intersection(*(set(t.get(name, {})) for t in tables)) if tables else set()
        if severities:
            out[name] = sorted(severities)
    return out


def _cells(rows: pd.DataFrame) -> list[SimpleNamespace]:
    """Stored rows as the ``key`` / ``value`` cells :func:`summarize` reads."""
    return [SimpleNamespace(key=r, value=float(r.value)) for r in rows.itertuples(index=False) if r.value == r.value]


def leaderboard(results: pd.DataFrame, *, baseline: str | None = None) -> dict[str, pd.DataFrame]:
    """One row per model, per dataset: the numbers a robustness paper reports.

    Columns (each only when some model has it): ``n``; ``clean acc.``; ``robust acc. <norm> ε=<eps>`` for every
    attack radius in the store (the worst case over the attacks run at that radius: AutoAttack when it was run,
    otherwise the strongest attack stored); ``mean corr. error`` (unnormalised, over the test corruptions and
    severities every model of the dataset has); with ``baseline``, ``mCE vs <baseline>`` and ``rel. mCE vs
    <baseline>`` (CE and relative CE normalised by that model, on the same corruptions and severities);
    ``mCE (AlexNet)`` / ``rel. mCE (AlexNet)`` for complete ImageNet-C rows;
    ``validation mean error``; ``mean flip prob.``; ``noise slope``; ``cam cosine (mean)`` /
    ``attention cosine (mean)``.

    Args:
        results: the store's results frame.
        baseline: a model of the store that the mCE columns are normalised by (its own mCE is 1).

    Returns:
        Per dataset, a frame whose accuracy cells are :class:`Estimate` and other cells floats (NaN when absent).
        ``frame.attrs["corruptions"]`` names the corruptions the corruption columns average over.

    Raises:
        ValueError: ``baseline`` is not a model in ``results``.
    """
    if baseline is not None and baseline not in set(results["model"]):
        known = ", ".join(sorted(set(results["model"])))
        raise ValueError(f"baseline {baseline!r} is not a model in the store; pass one of: {known}")
    boards = {}
    for dataset, data in results.groupby("dataset", sort=True):
        accuracy = data[(data["metric"] == "accuracy") & data["value"].notna()]
        models = sorted(set(data["model"]))
        tables = {m: _errors(accuracy[accuracy["model"] == m]) for m in models}
        common = _common([t for t in tables.values() if t])
        attacks = _attack_rows(data)
        radii = sorted({(r.norm, float(r.eps)) for r in attacks.itertuples(index=False)})
        cleans = {m: _clean(data[data["model"] == m]) for m in models}
        rows = [
            _model_row(m, data[data["model"] == m], tables, cleans, common, attacks, radii, baseline) for m in models
        ]
        board = pd.DataFrame(rows)
        board = board[[c for c in board.columns if c == "model" or board[c].notna().any()]]
        board.attrs["corruptions"] = list(common)
        boards[str(dataset)] = board
    return boards


def _clean(rows: pd.DataFrame) -> Estimate | None:
    """A model's clean accuracy; an attack-only run stores the clean accuracy of its attacked images instead."""
    clean = _largest_n(rows[(rows["metric"] == "accuracy") & (rows["perturbation"] == "clean")])
    return clean if clean is not None else _largest_n(rows[rows["metric"] == "clean_accuracy"])


def _safe(compute: Callable[[], float]) -> float:
    """A ratio metric, or NaN where it is undefined (a baseline no worse under corruption than clean)."""
    try:
        return compute()
    except ValueError:
        return math.nan


_SUMMARY_COLUMNS = {
    "mce": "mCE (AlexNet)",
    "relative_mce": "rel. mCE (AlexNet)",
    "validation_mean_error": "validation mean error",
    "mean_flip_probability": "mean flip prob.",
    "noise_slope": "noise slope",
}


def _model_row(
    model: str,
    rows: pd.DataFrame,
    tables: Mapping[str, dict[str, dict[int, float]]],
    cleans: Mapping[str, Estimate | None],
    common: Mapping[str, list[int]],
    attacks: pd.DataFrame,
    radii: Sequence[tuple[str, float]],
    baseline: str | None,
) -> dict[str, object]:
    clean = cleans[model]
    row: dict[str, object] = {"model": model, "n": clean.n if clean else None, "clean acc.": clean}
    mine = attacks[attacks["model"] == model]
    for norm, eps in radii:
        at = mine[(mine["norm"] == norm) & ((mine["eps"] - eps).abs() < 1e-9)]
        worst = at.loc[at["value"].idxmin()] if len(at) else None
        row[f"robust acc. {norm} ε={eps_label(eps, norm)}"] = None if worst is None else Estimate(
            float(worst["value"]), _n(worst["n"]), note=str(worst["perturbation"])
        )  # fmt: skip
    errors = {c: [tables[model][c][s] for s in common[c]] for c in common if c in tables[model]}
    complete = bool(common) and len(errors) == len(common)
    if complete:
        row["mean corr. error"] = sum(map(sum, errors.values())) / sum(map(len, errors.values()))
    if baseline is not None and complete and tables.get(baseline):
        base = {c: [tables[baseline][c][s] for s in common[c]] for c in common}
        names = list(common)
        row[f"mCE vs {baseline}"] = _safe(lambda: mean_corruption_error(errors, base, corruptions=names))
        base_clean = cleans.get(baseline)
        if clean is not None and base_clean is not None:
            row[f"rel. mCE vs {baseline}"] = _safe(lambda: relative_mean_corruption_error(
                errors, 1.0 - clean.value, base, 1.0 - base_clean.value, corruptions=names))  # fmt: skip
    summary = summarize(_cells(rows))
    for name, label in _SUMMARY_COLUMNS.items():
        if name in summary:
            row[label] = summary[name]
    for metric in ("cam_cosine", "attention_cosine"):
        values = rows.loc[rows["metric"] == metric, "value"].dropna()
        if len(values):
            row[f"{metric.replace('_', ' ')} (mean)"] = float(values.mean())
    return row


def adversarial_table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per model × attack × radius: the attack's setting, the clean and robust accuracy on its images.

    Returns:
        Columns ``model, dataset, attack, norm, ε, setting, n, clean acc., robust acc.`` (accuracies as
        :class:`Estimate`), sorted by model, norm, radius and robust accuracy; empty without attack cells.
    """
    rows = _attack_rows(results)
    clean = {
        (r.model, r.dataset, r.perturbation, r.params_json, r.seed): Estimate(float(r.value), _n(r.n))
        for r in results[(results["metric"] == "clean_accuracy") & results["value"].notna()].itertuples(index=False)
    }  # fmt: skip
    out = [
        {
            "model": r.model, "dataset": r.dataset, "attack": r.perturbation, "norm": r.norm,
            "ε": eps_label(float(r.eps), r.norm), "setting": attack_label(r.params_json), "n": _n(r.n),
            "clean acc.": clean.get((r.model, r.dataset, r.perturbation, r.params_json, r.seed)),
            "robust acc.": Estimate(float(r.value), _n(r.n)), "_eps": float(r.eps),
        }
        for r in rows.itertuples(index=False)
    ]  # fmt: skip
    if not out:
        return pd.DataFrame()
    table = pd.DataFrame(out)
    table["_v"] = [e.value for e in table["robust acc."]]
    table = table.sort_values(["model", "dataset", "norm", "_eps", "_v"], kind="stable")
    return table.drop(columns=["_eps", "_v"]).reset_index(drop=True)


def corruption_pivot(results: pd.DataFrame) -> pd.DataFrame:
    """Model × corruption: clean accuracy and the accuracy under each corruption averaged over its severities.

    Returns:
        One row per model (and dataset), columns ``model`` (``dataset`` when the results hold several), ``clean``,
        then the corruptions present in benchmark order (the 15 test, then the 4 validation corruptions); empty
        when no corruption accuracy is stored.
    """
    accuracy = results[(results["metric"] == "accuracy") & results["value"].notna()]
    corrupted = accuracy[accuracy["perturbation"].isin(CORRUPTIONS)]
    if corrupted.empty:
        return pd.DataFrame()
    keys = ["model", "dataset"] if results["dataset"].nunique() > 1 else ["model"]
    wide = corrupted.groupby([*keys, "perturbation"])["value"].mean().unstack("perturbation")
    wide = wide[[c for c in CORRUPTIONS if c in wide.columns]]
    clean = accuracy[accuracy["perturbation"] == "clean"].groupby(keys)["value"].mean()
    wide.insert(0, "clean", clean.reindex(wide.index))
    wide.columns.name = None
    return wide.reset_index()


def headline_numbers(results: pd.DataFrame) -> pd.DataFrame:
    """Every headline number of every (model, dataset) in long form: one row per quantity, never a sparse table.

    Quantities: the :func:`~robustlab.metrics.summary.summarize` numbers, the mean accuracy under each perturbation
    (``fog (mean acc.)``), each attack setting's robust accuracy (``pgd eps=8/255 linf steps=10 (robust acc.)``) and
    the mean explanation-stability cosines.

    Returns:
        Columns ``model, dataset, quantity, value, n``.
    """
    out: list[tuple[object, ...]] = []
    for (model, dataset), group in results.groupby(["model", "dataset"], sort=True):
        largest = group["n"].max()
        quantities: list[tuple[str, float, object]] = [
            (name.replace("_", " "), value, largest) for name, value in summarize(_cells(group)).items()
        ]
        acc = group[(group["metric"] == "accuracy") & (group["perturbation"] != "clean")]
        for pert, g in acc.groupby("perturbation", sort=True):
            quantities.append((f"{pert} (mean acc.)", float(g["value"].mean()), g["n"].max()))
        for r in group[group["metric"] == "robust_accuracy"].itertuples(index=False):
            quantities.append((f"{r.perturbation} {attack_label(r.params_json)} (robust acc.)", float(r.value), r.n))
        for metric in ("cam_cosine", "attention_cosine"):
            values = group.loc[group["metric"] == metric, "value"].dropna()
            if len(values):
                quantities.append((f"{metric.replace('_', ' ')} (mean)", float(values.mean()), largest))
        out.extend((model, dataset, name, value, _n(count)) for name, value, count in quantities)
    return pd.DataFrame(out, columns=["model", "dataset", "quantity", "value", "n"])
