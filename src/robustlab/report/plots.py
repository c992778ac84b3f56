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
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8,
                   bbox_to_anchor=(0.5, -0.02))  # fmt: skip
    fig.supxlabel("severity (0 = clean)", fontsize=9, y=0.03)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
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
