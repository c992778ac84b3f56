"""One self-contained HTML report (plots embedded as PNG data URIs) from a results store, and nothing else.

It reads the store's results, runs and stored model attributes, and computes with the metric library
(:mod:`robustlab.report.tables`); it never builds a model. Sections: a leaderboard per dataset (one row per model,
95 % Wilson intervals), corruption plots and the model x corruption table, an adversarial table and curves, the
noise study, every headline number in long form, all results, and the runs' provenance.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

from robustlab.metrics.noise_study import analysis_tables, noise_rows, with_attributes
from robustlab.metrics.summary import TEST_CORRUPTIONS, VALIDATION_CORRUPTIONS
from robustlab.report.plots import attack_curves, attribute_strips, corruption_bars, corruption_grid, level_curves
from robustlab.report.tables import Estimate, adversarial_table, corruption_pivot, headline_numbers, leaderboard
from robustlab.store import Store

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1260px;padding:0 1rem;
  color:#222;font-size:16px;line-height:1.4}
h1{margin-bottom:.2rem} h2{margin-top:2.2rem;border-bottom:1px solid #ddd} h3{margin-bottom:.3rem}
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}
th,td{border:1px solid #ddd;padding:.3rem .55rem;text-align:right;vertical-align:top}
th{background:#f4f4f4;cursor:pointer;position:sticky;top:0;z-index:1} th.params{text-align:left}
td.l,th.l{text-align:left} td.l{white-space:nowrap}
.ci{color:#666;font-size:.8rem;white-space:nowrap} .note{color:#666;font-size:.78rem}
.plots{display:flex;flex-direction:column;gap:1rem} .plots img{max-width:100%;height:auto;align-self:flex-start}
.muted{color:#666;font-size:.9rem} .wrap{overflow-x:auto}
.scroll{max-height:34rem;overflow:auto;border:1px solid #ddd} .scroll table{margin:0}
td.params{max-width:22rem;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;text-align:left}
table.board td:first-child{font-weight:600}
pre{background:#f7f7f7;padding:.5rem;overflow:auto;font-size:.8rem}
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
  document.body.dataset.plotsRendered = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  // plots drawn at 1:1 keep their text legible; a shrunk one (a window narrower than the figure) is counted
  document.body.dataset.plotsShrunk = imgs.filter(i => i.width < i.naturalWidth).length; });
"""


def _fmt(value: object) -> tuple[str, str]:
    """``(raw value for sorting, shown html)`` of a plain cell: floats to four decimals, NaN and None as a dash."""
    if value is None or value is pd.NA:
        return "", "—"
    if isinstance(value, float):
        if value != value:
            return "", "—"
        return repr(value), f"{value:.4f}"
    return str(value), html.escape(str(value))


def _percent(value: object) -> tuple[str, str]:
    """A fraction shown in percent; an :class:`Estimate` with its 95 % interval underneath."""
    if isinstance(value, Estimate):
        interval = value.interval
        shown = f"{100 * value.value:.1f}"
        if interval is not None:
            shown += f'<br><span class="ci">[{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]</span>'
        if value.note:
            shown += f'<br><span class="note">{html.escape(value.note)}</span>'
        return repr(value.value), shown
    if isinstance(value, float) and value == value:
        return repr(value), f"{100 * value:.1f}"
    return _fmt(value)


Formatter = Callable[[object], tuple[str, str]]


def _table(
    df: pd.DataFrame,
    *,
    left: int = 1,
    table_id: str = "",
    formats: Mapping[str, Formatter] | None = None,
    css: str = "",
    titles: Mapping[str, str] | None = None,
) -> str:
    """A sortable table; ``formats`` per column (default :func:`_fmt`), ``titles`` as header tooltips."""
    formats, titles = formats or {}, titles or {}
    head = "".join(
        f'<th class="{"params" if str(c) == "params" else ("l" if i < left else "")}"'
        + (f' title="{html.escape(titles[str(c)])}"' if str(c) in titles else "")
        + f">{html.escape(str(c))}</th>"
        for i, c in enumerate(df.columns)
    )
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for i, (column, v) in enumerate(zip(df.columns, row, strict=True)):
            raw, shown = formats.get(str(column), _fmt)(v)
            kind = "params" if column == "params" else ("l" if i < left else "")
            tip = f' title="{html.escape(str(v))}"' if kind == "params" else ""
            cells.append(f'<td class="{kind}" data-v="{html.escape(raw)}"{tip}>{shown}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    tid = f' id="{table_id}"' if table_id else ""
    return (
        f'<div class="wrap"><table class="sortable {css}"{tid}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


# leaderboard columns that are fractions (shown in %); the rest (n, noise slope, cosines) are shown as stored
_PERCENT_PREFIXES = ("clean acc.", "robust acc.", "mean corr. error", "mCE", "rel. mCE", "validation mean error",
                     "mean flip prob.")  # fmt: skip


def _leaderboard(results: pd.DataFrame, baseline: str | None) -> list[str]:
    parts = ["<h2>Leaderboard</h2>"]
    for dataset, board in leaderboard(results, baseline=baseline).items():
        robust = [c for c in board.columns if c.startswith("robust acc.")]
        order = [*robust, "clean acc."] if "clean acc." in board.columns else robust
        if order:
            keys = [board[c].map(lambda e: e.value if isinstance(e, Estimate) else -1.0) for c in order]
            board = board.assign(**{f"_k{i}": k for i, k in enumerate(keys)})
            board = board.sort_values([f"_k{i}" for i in range(len(keys))], ascending=False, kind="stable")
            board = board.drop(columns=[f"_k{i}" for i in range(len(keys))])
        board = board.rename(columns={c: f"{c} %" for c in board.columns if c.startswith(_PERCENT_PREFIXES)})
        formats: dict[str, Formatter] = {c: _percent for c in board.columns if c.endswith(" %")}
        formats["n"] = _fmt_int
        parts.append(f"<h3>{html.escape(dataset)}</h3>")
        parts.append(_table(board, left=1, table_id=f"leaderboard-{dataset}", formats=formats, css="board"))
        parts.append(_board_notes(board, baseline))
    return parts


def _fmt_int(value: object) -> tuple[str, str]:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return "", "—"
    return str(int(value)), f"{int(value):,}"  # type: ignore[call-overload]


def _board_notes(board: pd.DataFrame, baseline: str | None) -> str:
    notes = ["Accuracies and errors in %, with the 95 % Wilson interval from the stored n underneath."]
    if any(c.startswith("robust acc.") for c in board.columns):
        notes.append("Robust accuracy at each radius is the lowest over the attacks stored there (named under it; "
                     "AutoAttack where it was run).")  # fmt: skip
    corruptions = board.attrs.get("corruptions", [])
    if corruptions:
        of = "all 15" if len(corruptions) == len(TEST_CORRUPTIONS) else f"{len(corruptions)} of the 15"
        notes.append(f"Corruption columns average over {of} test corruptions every model here was run on "
                     f"({', '.join(corruptions)}).")  # fmt: skip
        if baseline is not None:
            notes.append(f"mCE and relative mCE are normalised by {html.escape(baseline)} (its own are 100 %).")
    if "noise slope" in board.columns:
        notes.append("Noise slope: accuracy lost per unit σ of Gaussian noise (least squares, clean at σ = 0).")
    return f'<p class="muted">{" ".join(notes)}</p>'


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _figures(df: pd.DataFrame, baseline: str | None) -> list[str]:
    """Sections of plots and their tables: corruptions, explanation stability, attacks, other perturbations."""
    parts: list[str] = []
    present = set(df.loc[df["metric"] == "accuracy", "perturbation"])
    pivot = corruption_pivot(df)
    for title, group in (("Common corruptions", TEST_CORRUPTIONS), ("Validation corruptions", VALIDATION_CORRUPTIONS)):
        names = [c for c in group if c in present]
        if not names:
            continue
        parts.append(f"<h2>{title}</h2>")
        parts.append(f'<div class="plots">{_img(corruption_grid(df, names), title + " grid")}</div>')
        parts.append(f'<div class="plots">{_img(corruption_bars(df, names, baseline), title + " errors")}</div>')
        if title == "Common corruptions" and not pivot.empty:
            parts.append("<h3>Accuracy under each corruption, mean over severities (%)</h3>")
            keys = [c for c in ("model", "dataset") if c in pivot.columns]
            shown = pivot.rename(columns={c: c.replace("_", " ") for c in pivot.columns if c not in keys})
            formats: dict[str, Formatter] = {c: _percent for c in shown.columns if c not in keys}
            parts.append(_table(shown, left=len(keys), table_id="corruptions", formats=formats))
    for metric, title in (("cam_cosine", "CAM stability"), ("attention_cosine", "Attention stability")):
        stored = set(df.loc[df["metric"] == metric, "perturbation"])
        names = [c for c in (*TEST_CORRUPTIONS, *VALIDATION_CORRUPTIONS) if c in stored]
        if names:
            parts.append(f"<h2>{title}: cosine similarity of clean and corrupted explanations</h2>")
            parts.append(f'<div class="plots">{_img(corruption_grid(df, names, metric), title)}</div>')
    attacks = adversarial_table(df)
    if not attacks.empty:
        parts.append("<h2>Adversarial attacks</h2>")
        parts.append(f'<div class="plots">{_img(attack_curves(df), "robust accuracy against epsilon")}</div>')
        shown = attacks.rename(columns={"clean acc.": "clean acc. %", "robust acc.": "robust acc. %"})
        parts.append(
            _table(
                shown,
                left=6,
                table_id="attacks",
                formats={"clean acc. %": _percent, "robust acc. %": _percent, "n": _fmt_int},
            )
        )
        parts.append('<p class="muted">Clean and robust accuracy on the attacked images, in %, 95 % Wilson '
                     "interval underneath.</p>")  # fmt: skip
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


def _noise_study(df: pd.DataFrame, attributes: Mapping[str, Mapping[str, object]]) -> list[str]:
    """The noise study's analysis, when the store holds a noise sweep of two or more models on one dataset.

    Architecture attributes come from the store (written by ``robustlab study noise``); a model without stored
    attributes shows them as unknown.
    """
    rows = [r for r in noise_rows(df, attributes) if r["rank_difference"] is not None]
    if not rows:
        return []
    joined = with_attributes(rows, attributes)
    grouped, verdicts = analysis_tables(joined)
    measured = ["model", "dataset", "noise_at", "clean", "top_sigma", "noisy", "drop", "slope", "rank_difference"]
    stored = ["stem_kernel", "stem_stride", "input_size", "global_pool", "pretraining", "min_std", "num_params"]
    columns = measured + stored
    strips = attribute_strips(joined, ["stem_kernel", "input_size", "global_pool", "pretraining"])
    missing = sorted({r["model"] for r in rows} - set(attributes))
    parts = [
        "<h2>Noise study: architecture against Gaussian-noise robustness</h2>",
        '<p class="muted">RankDiff = clean rank − rank at the largest σ every model of the dataset was run at '
        "(positive: more robust than its clean accuracy predicts); drop = clean − noisy accuracy.</p>",
        _table(pd.DataFrame([{c: r.get(c) for c in columns} for r in joined]), left=3, table_id="noise-study"),
        f'<div class="plots">{_img(strips, "RankDiff by attribute")}</div>',
    ]
    if missing:
        parts.append(f'<p class="muted">No stored architecture attributes for {html.escape(", ".join(missing))}: '
                     "`robustlab study noise` stores them when it measures.</p>")  # fmt: skip
    if grouped:
        parts.append("<h3>Grouped statistics</h3>")
        parts.append(_table(pd.DataFrame(grouped)[["attribute", "group", "value", "n", "mean", "std", "min", "max"]],
                            left=3, table_id="noise-groups"))  # fmt: skip
    verdict_rows = [{"design rule": rule, "on these models": verdict} for rule, verdict in verdicts.items()]
    parts.append(_table(pd.DataFrame(verdict_rows), left=2, table_id="noise-rules"))
    return parts


def _all_results(df: pd.DataFrame) -> str:
    """Every stored row, the value right after its key, in a scrolling box with a fixed header."""
    order = ["model", "dataset", "perturbation", "metric", "severity", "value", "n", "params", "seed", "split", "run"]
    shown = df.rename(columns={"params_json": "params", "run_id": "run"})
    shown["run"] = shown["run"].str.slice(0, 8)
    shown = shown[[c for c in order if c in shown.columns]]
    table = _table(shown, left=4, table_id="results", formats={"n": _fmt_int})
    return table.replace('<div class="wrap">', '<div class="wrap scroll">', 1)


def write_report(
    db: str | Path, out: str | Path, *, title: str = "robustlab report", baseline: str | None = None
) -> Path:
    """Write a self-contained HTML report of everything in the results store ``db``.

    Args:
        db: path of the SQLite results store.
        out: the HTML file to write (its folder must exist).
        title: page title.
        baseline: a model in the store that mCE and relative mCE are normalised by, and against which
            per-corruption errors are plotted as relative CE.

    Returns:
        The path written.

    Raises:
        FileNotFoundError: the store or the output folder does not exist.
        ValueError: ``baseline`` is not a model in the store.
    """
    db, out = Path(db), Path(out)
    if not db.is_file():
        raise FileNotFoundError(f"results store {db} does not exist; run `robustlab demo` or `robustlab eval` first")
    if not out.parent.exists():
        raise FileNotFoundError(f"output folder {out.parent} does not exist")
    with Store(db) as store:
        df = store.results()
        runs = store.runs()
        attributes = store.attributes()

    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="muted">store: {html.escape(str(db.resolve()))}</p>',
    ]
    if df.empty:
        parts.append("<p>The store holds no results yet.</p>")
    else:
        parts.extend(_leaderboard(df, baseline))
        parts.extend(_figures(df, baseline))
        parts.extend(_noise_study(df, attributes))
        parts.append("<h2>Every headline number</h2>")
        parts.append('<p class="muted">One row per model, dataset and quantity: the mean accuracy under each '
                     "perturbation, each attack setting's robust accuracy, and the summary metrics.</p>")  # fmt: skip
        parts.append(_table(headline_numbers(df), left=3, table_id="summary", formats={"n": _fmt_int}))
        parts.append(f"<h2>All results ({len(df):,} rows)</h2>")
        parts.append(_all_results(df))
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
