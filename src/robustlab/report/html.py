"""One self-contained HTML report (plots embedded as PNG data URIs) from a results store."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from robustlab.metrics.summary import attack_label
from robustlab.metrics.summary import summarize
from robustlab.perturb import TEST_CORRUPTIONS, VALIDATION_CORRUPTIONS
from robustlab.report.plots import attack_curves, attribute_strips, corruption_bars, corruption_grid, level_curves
from robustlab.store import ResultKey, Store

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1300px;color:#222}
h1{margin-bottom:.2rem} h2{margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right} th{background:#f4f4f4;cursor:pointer}
td.l,th.l{text-align:left} .plots{display:flex;flex-wrap:wrap;gap:1rem} .plots img{max-width:520px}
.muted{color:#777;font-size:.85rem} .wrap{overflow-x:auto}
pre{background:#f7f7f7;padding:.5rem;overflow:auto;font-size:.75rem}
"""

# click a header to sort the table by that column
_SORT_JS = """
document.querySelectorAll('table.sortable th').forEach((th, i) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0]; const rows = Array.from(body.rows);
  const dir = th.dataset.dir === 'asc' ? -1 : 1; th.dataset.dir = dir === 1 ? 'asc' : 'desc';
  rows.sort((a, b) => { const x = a.cells[i].dataset.v ?? a.cells[i].textContent;
    const y = b.cells[i].dataset.v ?? b.cells[i].textContent; const nx = parseFloat(x), ny = parseFloat(y);
    return dir * ((isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny); });
  rows.forEach(r => body.appendChild(r)); }));
// how many plots decoded, for automated checks of the rendered page
window.addEventListener('load', () => { const imgs = Array.from(document.images);
  document.body.dataset.plots = imgs.length;
  document.body.dataset.plotsRendered = imgs.filter(i => i.complete && i.naturalWidth > 0).length; });
"""


def _fmt(value: object) -> tuple[str, str]:
    if isinstance(value, float):
        if value != value:
            return "", "—"
        return repr(value), f"{value:.4f}"
    return str(value), html.escape(str(value))


def _table(df: pd.DataFrame, *, left: int = 1, table_id: str = "") -> str:
    head = "".join(
        f'<th class="{"l" if i < left else ""}">{html.escape(str(c))}</th>' for i, c in enumerate(df.columns)
    )
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for i, v in enumerate(row):
            raw, shown = _fmt(v)
            cells.append(f'<td class="{"l" if i < left else ""}" data-v="{html.escape(raw)}">{shown}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    tid = f' id="{table_id}"' if table_id else ""
    return (
        f'<div class="wrap"><table class="sortable"{tid}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


_SUMMARY_LABELS = {
    "clean_accuracy": "clean acc.",
    "mean_corruption_error": "mean corruption error",
    "mce": "mCE (AlexNet)",
    "relative_mce": "relative mCE",
    "validation_mean_error": "validation mean error",
    "noise_slope": "noise slope",
}


def _summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, dataset): the engine's headline numbers plus the mean accuracy under each perturbation."""
    rows = []
    for (model, dataset), group in df.groupby(["model", "dataset"], sort=True):
        cells = [
            SimpleNamespace(key=ResultKey(r.model, r.dataset, r.metric, r.split, r.perturbation, int(r.severity),
                                          r.params_json, int(r.seed)), value=float(r.value))
            for r in group.itertuples(index=False)
            if r.value == r.value
        ]  # fmt: skip
        row: dict[str, object] = {"model": model, "dataset": dataset}
        for name, value in summarize(cells).items():
            row[_SUMMARY_LABELS.get(name, name)] = value
        acc = group[(group["metric"] == "accuracy") & (group["perturbation"] != "clean")]
        for pert, g in acc.groupby("perturbation", sort=True):
            row[f"{pert} (mean acc.)"] = float(g["value"].mean())
        robust = group[group["metric"] == "robust_accuracy"]
        for r in robust.itertuples(index=False):
            row[f"{r.perturbation} {attack_label(r.params_json)} (robust acc.)"] = float(r.value)
        for metric in ("cam_cosine", "attention_cosine"):
            values = group.loc[group["metric"] == metric, "value"]
            if len(values):
                row[f"{metric.replace('_', ' ')} (mean)"] = float(values.mean())
        n = group["n"].dropna()
        row["n"] = int(n.max()) if len(n) else None
        rows.append(row)
    return pd.DataFrame(rows)


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _figures(df: pd.DataFrame, baseline: str | None) -> list[str]:
    """Sections of plots: corruptions (small multiples and error bars), then every other perturbation's curve."""
    parts: list[str] = []
    present = set(df.loc[df["metric"] == "accuracy", "perturbation"])
    for title, group in (("Common corruptions", TEST_CORRUPTIONS), ("Validation corruptions", VALIDATION_CORRUPTIONS)):
        names = [c for c in group if c in present]
        if not names:
            continue
        parts.append(f"<h2>{title}</h2>")
        parts.append(f'<div class="plots">{_img(corruption_grid(df, names), title + " grid")}</div>')
        parts.append(f'<div class="plots">{_img(corruption_bars(df, names, baseline), title + " errors")}</div>')
    for metric, title in (("cam_cosine", "CAM stability"), ("attention_cosine", "Attention stability")):
        names = [c for c in (*TEST_CORRUPTIONS, *VALIDATION_CORRUPTIONS) if c in set(df.loc[df["metric"] == metric,
                 "perturbation"])]  # fmt: skip
        if names:
            parts.append(f"<h2>{title}: cosine similarity of clean and corrupted explanations</h2>")
            parts.append(f'<div class="plots">{_img(corruption_grid(df, names, metric), title)}</div>')
    if (df["metric"] == "robust_accuracy").any():
        parts.append("<h2>Adversarial attacks</h2>")
        parts.append(f'<div class="plots">{_img(attack_curves(df), "robust accuracy against epsilon")}</div>')
    others = sorted(p for p in present - {"clean"} - set(TEST_CORRUPTIONS) - set(VALIDATION_CORRUPTIONS))
    curves = []
    for pert in others:
        sub = df[(df["perturbation"] == pert) & (df["metric"] == "accuracy")]
        if len(sub.drop_duplicates(["severity", "params_json"])) >= 2:
            curves.append(_img(level_curves(df, pert), pert))
    if curves:
        parts.append("<h2>Noise, occlusion and other perturbations</h2>")
        parts.append('<div class="plots">' + "".join(curves) + "</div>")
    return parts


def _attributes(models: list[str]) -> dict[str, object]:
    """Architecture attributes per model; a model that cannot be built (a moved checkpoint) stays unknown."""
    import warnings

    from robustlab.study.attributes import spec_attributes

    out: dict[str, object] = {}
    for model in models:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[model] = spec_attributes(model)
        except Exception:  # noqa: BLE001 - the report still shows the model, with unknown attributes
            continue
    return out


def _noise_study(df: pd.DataFrame) -> list[str]:
    """The seed-004 analysis, when the store holds a noise sweep of two or more models on one dataset."""
    from robustlab.metrics.noise_study import analysis_tables, noise_rows, with_attributes

    rows = [r for r in noise_rows(df) if r["rank_difference"] is not None]
    if not rows:
        return []
    joined = with_attributes(rows, _attributes(sorted({r["model"] for r in rows})))
    grouped, verdicts = analysis_tables(joined)
    columns = ["model", "dataset", "noise_at", "clean", "top_sigma", "noisy", "drop", "slope", "rank_difference",
               "stem_kernel", "stem_stride", "input_size", "global_pool", "pretraining", "min_std", "num_params"]
    strips = attribute_strips(joined, ["stem_kernel", "input_size", "global_pool", "pretraining"])
    parts = [
        "<h2>Noise study: architecture against Gaussian-noise robustness</h2>",
        '<p class="muted">RankDiff = clean rank − rank at the largest σ every model of the dataset was run at '
        "(positive: more robust than its clean accuracy predicts); drop = clean − noisy accuracy.</p>",
        _table(pd.DataFrame([{c: r.get(c) for c in columns} for r in joined]), left=3, table_id="noise-study"),
        f'<div class="plots">{_img(strips, "RankDiff by attribute")}</div>',
    ]
    if grouped:
        parts.append("<h3>Grouped statistics</h3>")
        parts.append(_table(pd.DataFrame(grouped)[["attribute", "group", "value", "n", "mean", "std", "min", "max"]],
                            left=3, table_id="noise-groups"))  # fmt: skip
    verdict_rows = [{"design rule (seed 004)": rule, "on these models": verdict} for rule, verdict in verdicts.items()]
    parts.append(_table(pd.DataFrame(verdict_rows), left=2, table_id="noise-rules"))
    return parts


def write_report(
    db: str | Path, out: str | Path, *, title: str = "robustlab report", baseline: str | None = None
) -> Path:
    """Write a self-contained HTML report of everything in the results store ``db``.

    Args:
        db: path of the SQLite results store.
        out: the HTML file to write (its folder must exist).
        title: page title.
        baseline: a model in the store against which per-corruption errors are shown as relative CE.

    Returns:
        The path written.

    Raises:
        FileNotFoundError: the store or the output folder does not exist.
    """
    db, out = Path(db), Path(out)
    if not db.is_file():
        raise FileNotFoundError(f"results store {db} does not exist; run `robustlab demo` or `robustlab eval` first")
    if not out.parent.exists():
        raise FileNotFoundError(f"output folder {out.parent} does not exist")
    with Store(db) as store:
        df = store.results()
        runs = store.runs()

    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="muted">store: {html.escape(str(db.resolve()))}</p>',
    ]
    if df.empty:
        parts.append("<p>The store holds no results yet.</p>")
    else:
        parts.append("<h2>Summary</h2>")
        parts.append(_table(_summary(df), left=2, table_id="summary"))
        parts.extend(_figures(df, baseline))
        parts.extend(_noise_study(df))
        parts.append("<h2>All results</h2>")
        cols = ["model", "dataset", "split", "perturbation", "severity", "params_json", "metric", "value", "n", "seed"]
        shown = df[[c for c in [*cols, "run_id"] if c in df.columns]].rename(columns={"params_json": "params"})
        shown["run_id"] = shown["run_id"].str.slice(0, 8)
        parts.append(_table(shown, left=4, table_id="results"))
    if not runs.empty:
        parts.append("<h2>Runs (provenance)</h2>")
        cols = [
            c
            for c in (
                "run_id",
                "started_at",
                "finished_at",
                "status",
                "command",
                "robustlab_version",
                "torch_version",
                "device",
                "git_sha",
            )
            if c in runs.columns
        ]  # fmt: skip
        shown_runs = runs[cols].copy()
        shown_runs["run_id"] = shown_runs["run_id"].str.slice(0, 8)
        if "git_sha" in shown_runs:
            shown_runs["git_sha"] = shown_runs["git_sha"].fillna("").str.slice(0, 10)
        for col in ("started_at", "finished_at"):
            if col in shown_runs:
                stamps = pd.to_datetime(shown_runs[col], utc=True)
                shown_runs[col] = stamps.dt.strftime("%Y-%m-%d %H:%M:%S UTC").fillna("")
        parts.append(_table(shown_runs, left=len(cols), table_id="runs"))
        for row in runs.itertuples(index=False):
            config = getattr(row, "config_json", None)
            if config:
                pretty = json.dumps(json.loads(config), indent=1, sort_keys=True)
                parts.append(
                    f"<details><summary>config of run {html.escape(str(row.run_id))}</summary>"
                    f"<pre>{html.escape(pretty)}</pre></details>"
                )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(parts)}<script>{_SORT_JS}</script></body></html>"
    )
    out.write_text(page, encoding="utf-8")
    return out
