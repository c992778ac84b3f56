"""Matplotlib figures for reports, returned as PNG bytes. Input: long-format store rows (a DataFrame)."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # reports are written headless

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

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
        points = sorted(zip(xs, pert["value"], strict=True))
        clean = group[group["perturbation"] == "clean"]
        if len(clean):
            points = [(0.0, float(clean["value"].iloc[0])), *points]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", ms=3,
                label=_label(model, dataset, n_datasets))  # fmt: skip
    ax.grid(alpha=0.3)
    if metric in ("accuracy", "error"):
        ax.set_ylim(0, 1)
    return xlabel


def level_curves(df: pd.DataFrame, perturbation: str, metric: str = "accuracy") -> bytes:
    """``metric`` against the perturbation's level (severity, σ or ρ), one line per (model, dataset), clean at 0."""
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    xlabel = _curves(ax, df, perturbation, metric)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric)
    ax.set_title(perturbation)
    ax.legend(fontsize=7, loc="best")
    return _png(fig)


def corruption_grid(df: pd.DataFrame, corruptions: Sequence[str], metric: str = "accuracy") -> bytes:
    """Small multiples: accuracy against severity for every corruption, one line per model."""
    cols = 5
    rows = math.ceil(len(corruptions) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.3 * rows), sharey=True, squeeze=False)
    for ax, name in zip(axes.flat, corruptions, strict=False):
        _curves(ax, df, name, metric)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(corruptions) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    # fixed room in inches below the panels: the axis label, then the legend under it
    height = 2.3 * rows
    legend_rows = math.ceil(len(labels) / 4) if handles else 0
    bottom = (0.35 + 0.22 * legend_rows) / height
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8,
                   bbox_to_anchor=(0.5, 0.0))  # fmt: skip
    fig.supxlabel("severity (0 = clean)", fontsize=9, y=bottom - 0.3 / height, va="bottom")
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return _png(fig)


def corruption_bars(df: pd.DataFrame, corruptions: Sequence[str], baseline: str | None = None) -> bytes:
    """Per corruption, the severity-averaged error of each model; with ``baseline``, as CE relative to it."""
    acc = df[(df["metric"] == "accuracy") & df["perturbation"].isin(corruptions)]
    table = acc.groupby(["model", "perturbation"])["value"].mean().unstack("perturbation")
    errors = 1.0 - table.reindex(columns=[c for c in corruptions if c in table.columns])
    ylabel = "mean error over severities"
    if baseline is not None and baseline in errors.index:
        errors = errors / errors.loc[baseline]
        ylabel = f"CE relative to {baseline}"
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(errors.columns) * max(1, len(errors))), 3.6))
    width = 0.8 / max(1, len(errors))
    for i, (model, values) in enumerate(errors.iterrows()):
        xs = [j + (i - (len(errors) - 1) / 2) * width for j in range(len(values))]
        ax.bar(xs, values.values, width=width, label=str(model))
    if baseline is not None and baseline in errors.index:
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xticks(range(len(errors.columns)))
    ax.set_xticklabels(errors.columns, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


ATTACK_SETTING = ("norm", "steps", "loss")


def attack_curves(df: pd.DataFrame) -> bytes:
    """Robust accuracy against ε, one line per (model, dataset, attack, norm, steps, loss); clean accuracy at ε = 0."""
    rows = df[df["metric"] == "robust_accuracy"]
    clean = df[df["metric"] == "clean_accuracy"]
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    lines: dict[tuple, list[tuple[float, float]]] = {}
    for row, clean_row in zip(rows.itertuples(index=False), _matching(rows, clean), strict=True):
        params = json.loads(row.params_json)
        eps = params.get("eps")
        if not isinstance(eps, (int, float)):
            continue
        setting = " ".join(f"{k}={params[k]}" for k in ATTACK_SETTING if k in params)
        key = (row.model, row.dataset, row.perturbation, setting)
        lines.setdefault(key, []).append((float(eps), float(row.value)))
        if clean_row is not None:
            lines[key].append((0.0, clean_row))
    n_datasets = rows["dataset"].nunique()
    for (model, dataset, attack, setting), points in sorted(lines.items()):
        points = sorted(set(points))
        label = f"{_label(model, dataset, n_datasets)} · {attack} {setting}"
        ax.plot([p[0] * 255 for p in points], [p[1] for p in points], marker="o", ms=3, label=label)
    ax.set_xlabel("ε × 255 (0 = clean)")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="best")
    return _png(fig)


def _matching(rows: pd.DataFrame, clean: pd.DataFrame) -> list[float | None]:
    """The clean accuracy stored beside each robust-accuracy row (same model, dataset, attack, params, seed)."""
    keys = ["model", "dataset", "perturbation", "params_json", "seed"]
    lookup = {tuple(r[k] for k in keys): float(r["value"]) for _, r in clean.iterrows()}
    return [lookup.get(tuple(r[k] for k in keys)) for _, r in rows.iterrows()]


def attribute_strips(rows: Sequence[dict], attributes: Sequence[str], value: str = "rank_difference") -> bytes:
    """One panel per architecture attribute: each model's ``value`` (RankDiff) at its attribute value, with the
    group mean as a bar — how the noise study's design rules look on the models actually run."""
    fig, axes = plt.subplots(1, len(attributes), figsize=(3.2 * len(attributes), 3.0), sharey=True, squeeze=False)
    for ax, attribute in zip(axes[0], attributes, strict=True):
        known = [r for r in rows if r.get(attribute, "unknown") != "unknown" and r.get(value) is not None]
        groups = sorted({r[attribute] for r in known}, key=lambda g: (isinstance(g, str), g))
        for i, group in enumerate(groups):
            ys = [float(r[value]) for r in known if r[attribute] == group]
            ax.scatter([i + 0.08 * (j - (len(ys) - 1) / 2) for j in range(len(ys))], ys, s=14, alpha=0.8)
            ax.hlines(sum(ys) / len(ys), i - 0.3, i + 0.3, color="black", lw=2)
        ax.set_xticks(range(len(groups)), [f"{g:.3g}" if isinstance(g, float) else str(g) for g in groups])
        ax.set_xlim(-0.6, max(len(groups) - 0.4, 0.6))
        ax.set_title(attribute.replace("_", " "), fontsize=9)
        ax.axhline(0, color="grey", lw=0.6)
        ax.grid(alpha=0.3, axis="y")
        if not groups:
            ax.text(0.5, 0.5, "unknown for\nevery model", ha="center", va="center", transform=ax.transAxes)
    axes[0][0].set_ylabel("RankDiff (+: more robust)" if value == "rank_difference" else value)
    fig.tight_layout()
    return _png(fig)
