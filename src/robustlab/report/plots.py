"""Matplotlib figures for reports, returned as PNG bytes. Input: long-format store rows (a DataFrame).

Figures are drawn for the page at 1:1 (100 dpi, at most 12.4 inches = 1,240 px wide, the report's column), with
text at 10-12 pt (14-17 px), so nothing is shrunk by the browser. Every accuracy with a stored sample count gets
its 95 % Wilson interval as an error bar.
"""

from __future__ import annotations

import functools
import io
import json
import math
from collections.abc import Callable, Sequence
from typing import ParamSpec

import matplotlib

matplotlib.use("Agg")  # reports are written headless

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from robustlab.metrics import wilson_interval  # noqa: E402

_P = ParamSpec("_P")
PAGE_WIDTH = 12.4  # inches at 100 dpi: the report's 1,240-px column


def _legible(plot: Callable[_P, bytes]) -> Callable[_P, bytes]:
    # one text size for every figure, legible on the page at 1:1, without touching matplotlib's global settings
    @functools.wraps(plot)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> bytes:
        with plt.rc_context(
            {
                "font.size": 11,
                "axes.titlesize": 12,
                "axes.labelsize": 11,
                "legend.fontsize": 10,
                "xtick.labelsize": 10,
                "ytick.labelsize": 10,
                "figure.titlesize": 12,
            }
        ):
            return plot(*args, **kwargs)

    return wrapper


def _count(value: object) -> int | None:
    """A stored sample count, or None where the store has none (NULL reads back as NA or NaN)."""
    if value is None or pd.isna(value):
        return None
    return int(value)  # type: ignore[call-overload]


def _yerr(values: Sequence[float], counts: Sequence[object]) -> list[list[float]] | None:
    """Asymmetric error bars (below, above) from each value's Wilson interval; None when no value has a count."""
    below, above, any_n = [], [], False
    for value, count in zip(values, counts, strict=True):
        n = _count(count)
        if n and 0.0 <= value <= 1.0:
            low, high = wilson_interval(value, n)
            # clamped: at 0 % or 100 % rounding can put the bound a hair past the value
            below.append(max(0.0, value - low))
            above.append(max(0.0, high - value))
            any_n = True
        else:
            below.append(0.0)
            above.append(0.0)
    return [below, above] if any_n else None


# parameters that carry a perturbation's level when severity is 0 (noise σ, occlusion ratio)
LEVEL_PARAMS = {"sigma": "noise σ (pixel space)", "ratio": "occluded fraction ρ"}


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _levels(rows: pd.DataFrame) -> tuple[list[float], str]:
    params = [json.loads(p) for p in rows["params_json"]]
    for name, label in LEVEL_PARAMS.items():
        if params and all(isinstance(p.get(name), (int, float)) for p in params):
            return [float(p[name]) for p in params], label
    return [float(s) for s in rows["severity"]], "severity"


def _label(model: str, dataset: str, datasets: int) -> str:
    return model if datasets == 1 else f"{model} · {dataset}"


def _curves(ax: plt.Axes, df: pd.DataFrame, perturbation: str, metric: str) -> str:
    rows = df[(df["metric"] == metric) & df["perturbation"].isin([perturbation, "clean"])]
    n_datasets = rows["dataset"].nunique()
    xlabel = "severity"
    for (model, dataset), group in rows.groupby(["model", "dataset"], sort=True):
        pert = group[group["perturbation"] == perturbation]
        if pert.empty:
            continue
        xs, xlabel = _levels(pert)
        points = sorted(zip(xs, pert["value"], pert["n"], strict=True), key=lambda p: p[0])
        clean = group[group["perturbation"] == "clean"]
        if len(clean):
            points = [(0.0, float(clean["value"].iloc[0]), clean["n"].iloc[0]), *points]
        ys = [float(p[1]) for p in points]
        yerr = _yerr(ys, [p[2] for p in points]) if metric in ("accuracy", "error") else None
        ax.errorbar([p[0] for p in points], ys, yerr=yerr, marker="o", ms=4, capsize=3, elinewidth=1,
                    label=_label(model, dataset, n_datasets))  # fmt: skip
    ax.grid(alpha=0.3)
    if metric in ("accuracy", "error"):
        ax.set_ylim(0, 1)
    return xlabel


@_legible
def level_curves(df: pd.DataFrame, perturbation: str, metric: str = "accuracy") -> bytes:
    """``metric`` against the perturbation's level (severity, σ or ρ), one line per (model, dataset), clean at 0."""
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    xlabel = _curves(ax, df, perturbation, metric)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric)
    ax.set_title(f"{perturbation} (bars: 95 % interval)")
    ax.legend(loc="best")
    return _png(fig)


@_legible
def corruption_grid(df: pd.DataFrame, corruptions: Sequence[str], metric: str = "accuracy") -> bytes:
    """Small multiples: accuracy against severity for every corruption, one line per model."""
    cols = min(4, len(corruptions))
    rows = math.ceil(len(corruptions) / cols)
    panel_height = 2.8
    fig, axes = plt.subplots(rows, cols, figsize=(PAGE_WIDTH / 4 * cols, panel_height * rows), sharey=True,
                             squeeze=False)  # fmt: skip
    for ax, name in zip(axes.flat, corruptions, strict=False):
        _curves(ax, df, name, metric)
        ax.set_title(name)
    for ax in list(axes.flat)[len(corruptions) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    # fixed room in inches below the panels: the axis label, then the legend under it
    height = panel_height * rows
    legend_rows = math.ceil(len(labels) / 3) if handles else 0
    bottom = (0.45 + 0.3 * legend_rows) / height
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), bbox_to_anchor=(0.5, 0.0))
    fig.supxlabel("severity (0 = clean); bars: 95 % interval", y=bottom - 0.4 / height, va="bottom")
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return _png(fig)


@_legible
def corruption_bars(df: pd.DataFrame, corruptions: Sequence[str], baseline: str | None = None) -> bytes:
    """Per corruption, the severity-averaged error of each model; with ``baseline``, as CE relative to it.

    Plain errors get the Wilson interval of all severities' samples pooled (they are the same images at each
    severity, so the bar is narrower than a fully independent sample would give: read it as a lower bound).
    """
    acc = df[(df["metric"] == "accuracy") & df["perturbation"].isin(corruptions)]
    grouped = acc.groupby(["model", "perturbation"])
    table = grouped["value"].mean().unstack("perturbation")
    counts = grouped["n"].sum(min_count=1).unstack("perturbation")
    names = [c for c in corruptions if c in table.columns]
    errors = 1.0 - table.reindex(columns=names)
    counts = counts.reindex(index=errors.index, columns=names)
    relative = baseline is not None and baseline in errors.index
    ylabel = "mean error over severities"
    if relative:
        errors = errors / errors.loc[baseline]
        ylabel = f"CE relative to {baseline}"
    fig, ax = plt.subplots(figsize=(min(PAGE_WIDTH, max(7.5, 0.45 * len(names) * max(1, len(errors)))), 4.6))
    width = 0.8 / max(1, len(errors))
    for i, (model, values) in enumerate(errors.iterrows()):
        xs = [j + (i - (len(errors) - 1) / 2) * width for j in range(len(values))]
        yerr = None if relative else _yerr(list(values.values), list(counts.loc[model].values))
        ax.bar(xs, values.values, width=width, label=str(model), yerr=yerr, capsize=2, ecolor="0.3")
    if relative:
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=35, ha="right")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


ATTACK_SETTING = ("norm", "steps", "queries", "loss")


@_legible
def attack_curves(df: pd.DataFrame) -> bytes:
    """Robust accuracy against ε, one line per (model, dataset, attack, norm, budget, loss); clean at ε = 0."""
    rows = df[df["metric"] == "robust_accuracy"]
    clean = df[df["metric"] == "clean_accuracy"]
    fig, ax = plt.subplots(figsize=(8.0, 5.0))
    lines: dict[tuple, set[tuple[float, float, int | None]]] = {}
    for row, clean_row in zip(rows.itertuples(index=False), _matching(rows, clean), strict=True):
        params = json.loads(row.params_json)
        eps = params.get("eps")
        if not isinstance(eps, (int, float)):
            continue
        setting = " ".join(f"{k}={params[k]}" for k in ATTACK_SETTING if k in params)
        key = (row.model, row.dataset, row.perturbation, setting)
        lines.setdefault(key, set()).add((float(eps), float(row.value), _count(row.n)))
        if clean_row is not None:
            lines[key].add((0.0, *clean_row))
    n_datasets = rows["dataset"].nunique()
    for (model, dataset, attack, setting), found in sorted(lines.items()):
        points = sorted(found, key=lambda p: (p[0], p[1]))
        ys = [p[1] for p in points]
        label = f"{_label(model, dataset, n_datasets)} · {attack} {setting}"
        ax.errorbar([p[0] * 255 for p in points], ys, yerr=_yerr(ys, [p[2] for p in points]), marker="o", ms=4,
                    capsize=3, elinewidth=1, label=label)  # fmt: skip
    ax.set_xlabel("ε × 255 (0 = clean); bars: 95 % interval")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1 if len(lines) > 4 else 2)
    return _png(fig)


def _matching(rows: pd.DataFrame, clean: pd.DataFrame) -> list[tuple[float, int | None] | None]:
    """The clean accuracy (and its n) beside each robust-accuracy row (same model, dataset, attack, params, seed)."""
    keys = ["model", "dataset", "perturbation", "params_json", "seed"]
    lookup = {tuple(r[k] for k in keys): (float(r["value"]), _count(r["n"])) for _, r in clean.iterrows()}
    return [lookup.get(tuple(r[k] for k in keys)) for _, r in rows.iterrows()]


@_legible
def attribute_strips(rows: Sequence[dict], attributes: Sequence[str], value: str = "rank_difference") -> bytes:
    """One panel per architecture attribute: each model's ``value`` (RankDiff) at its attribute value, with the
    group mean as a bar — how the noise study's design rules look on the models actually run."""
    fig, axes = plt.subplots(1, len(attributes), figsize=(min(PAGE_WIDTH, 3.1 * len(attributes)), 3.6), sharey=True,
                             squeeze=False)  # fmt: skip
    for ax, attribute in zip(axes[0], attributes, strict=True):
        known = [r for r in rows if r.get(attribute, "unknown") != "unknown" and r.get(value) is not None]
        groups = sorted({r[attribute] for r in known}, key=lambda g: (isinstance(g, str), g))
        for i, group in enumerate(groups):
            ys = [float(r[value]) for r in known if r[attribute] == group]
            ax.scatter([i + 0.08 * (j - (len(ys) - 1) / 2) for j in range(len(ys))], ys, s=14, alpha=0.8)
            ax.hlines(sum(ys) / len(ys), i - 0.3, i + 0.3, color="black", lw=2)
        ax.set_xticks(range(len(groups)), [f"{g:.3g}" if isinstance(g, float) else str(g) for g in groups])
        ax.set_xlim(-0.6, max(len(groups) - 0.4, 0.6))
        ax.set_title(attribute.replace("_", " "))
        ax.axhline(0, color="grey", lw=0.6)
        ax.grid(alpha=0.3, axis="y")
        if not groups:
            ax.text(0.5, 0.5, "unknown for\nevery model", ha="center", va="center", transform=ax.transAxes)
    axes[0][0].set_ylabel("RankDiff (+: more robust)" if value == "rank_difference" else value)
    fig.tight_layout()
    return _png(fig)
