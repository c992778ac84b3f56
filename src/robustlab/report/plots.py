"""Matplotlib figures for reports, returned as PNG bytes."""

from __future__ import annotations

import io
import json

import matplotlib

matplotlib.use("Agg")  # reports are written headless

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def severity_curves(df: pd.DataFrame, perturbation: str, metric: str = "accuracy") -> bytes:
    """Metric against severity, one line per (model, dataset), with the clean value at severity 0.

    Args:
        df: long-format results (store columns) for one perturbation plus the ``clean`` rows.
        perturbation: the perturbation to plot.
        metric: the metric on the y axis.
    """
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    rows = df[(df["metric"] == metric) & (df["perturbation"].isin([perturbation, "clean"]))]
    for (model, dataset), group in rows.groupby(["model", "dataset"], sort=True):
        clean = group[group["perturbation"] == "clean"]
        pert = group[group["perturbation"] == perturbation].sort_values("severity")
        # noise sweeps carry their level as params {"sigma": σ}: plot against σ rather than the level index
        sigmas = [json.loads(p).get("sigma") for p in pert["params_json"]]
        use_sigma = bool(sigmas) and all(isinstance(v, (int, float)) for v in sigmas)
        xs = sigmas if use_sigma else list(pert["severity"])
        ys = list(pert["value"])
        if len(clean):
            xs = [0.0, *xs]
            ys = [float(clean["value"].iloc[0]), *ys]
        ax.plot(xs, ys, marker="o", label=f"{model} · {dataset}")
    has_sigma = rows["params_json"].str.contains('"sigma"').any()
    ax.set_xlabel("noise σ (pixel space)" if has_sigma else "severity")
    ax.set_ylabel(metric)
    ax.set_title(perturbation)
    ax.grid(alpha=0.3)
    if metric in ("accuracy", "error"):
        ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="best")
    return _png(fig)
