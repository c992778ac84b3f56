"""``robustlab results``: print, pivot and export what the results store holds, or list its runs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from robustlab.cli._app import app
from robustlab.cli._common import console, user_errors
from robustlab.store import DEFAULT_PATH, Store, export_frame, pivot_results

# columns shown even when constant; every other key column is shown only when it varies, and its single value
# goes into the caption instead, so the table stays narrow enough for a terminal
_ALWAYS_SHOWN = ("model", "perturbation", "severity", "metric", "value", "n")
_LONG_ORDER = (
    "run",
    "model",
    "dataset",
    "split",
    "perturbation",
    "severity",
    "params",
    "seed",
    "metric",
    "value",
    "n",
)
_NUMERIC = ("severity", "seed", "value", "n")
_STATUS_STYLE = {"finished": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}
_SHORT_ID = 8
_NAME_WIDTH = 24


def _fmt(value: object) -> str:
    """A cell for display; six significant digits are enough to read, ``--export`` keeps every digit."""
    if value is None or value is pd.NA:
        return "–"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _duration(started: pd.Timestamp, finished: pd.Timestamp) -> str:
    if pd.isna(finished) or pd.isna(started):
        return "–"
    seconds = max(0, round((finished - started).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def _resolve_runs(store: Store, prefixes: list[str]) -> list[str]:
    """Full run ids for the ids or id prefixes a user typed (the tables show the first 8 characters)."""
    known = list(store.runs()["run_id"])
    resolved = []
    for prefix in prefixes:
        matches = [run_id for run_id in known if run_id.startswith(prefix)]
        if not matches:
            raise ValueError(f"no run id starts with {prefix!r}; list the runs with `robustlab results --runs`")
        if len(matches) > 1:
            raise ValueError(f"run id prefix {prefix!r} is ambiguous ({len(matches)} runs); type more characters")
        resolved.append(matches[0])
    return resolved


def _render(frame: pd.DataFrame, title: str, constants: dict[str, object]) -> Table:
    caption = " · ".join(f"{name}={value}" for name, value in constants.items()) or None
    table = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    cells = {column: [_fmt(value) for value in frame[column]] for column in frame.columns}
    numeric = {c for c in frame.columns if c in _NUMERIC or c not in _LONG_ORDER}  # pivot metrics are numbers
    wanted = {c: max([len(str(c)), *map(len, cells[c])]) for c in frame.columns}
    # Numbers never wrap. Names keep their width (up to a point) while the terminal has room for them, and the
    # params JSON folds into what is left, so a narrow terminal folds params first rather than breaking model
    # names mid-word. Widths are worked out here because rich's own shrinking overshoots by a character or
    # two when every column has a minimum. Each column costs its padding and a border: 3 characters.
    room = console.width - (3 * len(frame.columns) + 1) - sum(wanted[c] for c in numeric)
    name_widths = {c: min(_NAME_WIDTH, wanted[c]) for c in frame.columns if c not in numeric and c != "params"}
    params_min = min(8, wanted.get("params", 0))
    keep_names = sum(name_widths.values()) + params_min <= room
    params_width = min(wanted.get("params", 0), room - sum(name_widths.values())) if keep_names else params_min
    for column in frame.columns:
        if column in numeric:
            table.add_column(str(column), justify="right", no_wrap=True, min_width=wanted[column])
        elif column == "params":
            table.add_column("params", overflow="fold", width=max(params_width, params_min))
        else:
            table.add_column(str(column), overflow="fold", min_width=name_widths[column] if keep_names else None)
    for row in zip(*cells.values(), strict=True):
        table.add_row(*row)
    return table


def _split_constant(frame: pd.DataFrame, candidates: tuple[str, ...]) -> tuple[pd.DataFrame, dict[str, object]]:
    constants = {}
    for column in candidates:
        if column in frame.columns and column not in _ALWAYS_SHOWN and frame[column].nunique(dropna=False) == 1:
            constants[column] = frame[column].iloc[0]
    return frame.drop(columns=list(constants)), constants


def _display_frame(results: pd.DataFrame) -> pd.DataFrame:
    shown = results.rename(columns={"params_json": "params"})
    shown.insert(0, "run", shown.pop("run_id").str.slice(0, _SHORT_ID))
    return shown[list(_LONG_ORDER)]


def _runs_table(runs: pd.DataFrame, db: Path) -> Table:
    table = Table(
        title=f"{len(runs)} run(s) in {db}",
        caption=(
            "a run left 'running' whose process is gone was killed; re-run its command to resume it"
            if (runs["status"] == "running").any()
            else None
        ),
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("run", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("started (UTC)")
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("results", justify="right", no_wrap=True)
    table.add_column("device", no_wrap=True)
    table.add_column("command", overflow="fold")
    for row in runs.itertuples(index=False):
        style = _STATUS_STYLE.get(row.status, "")
        table.add_row(
            row.run_id[:_SHORT_ID],
            f"[{style}]{row.status}[/]" if style else row.status,
            row.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            _duration(row.started_at, row.finished_at),
            str(row.n_results),
            _fmt(row.device),
            _fmt(row.command),
        )
    return table


@app.command("results")
def results_command(
    db: Annotated[Path, typer.Option("--db", metavar="PATH", help="The results store (SQLite file).")] = Path(
        DEFAULT_PATH
    ),
    model: Annotated[
        list[str] | None, typer.Option("--model", metavar="NAME", help="Only this model; repeat for several.")
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option("--dataset", metavar="NAME", help="Only this dataset; repeat for several."),
    ] = None,
    perturbation: Annotated[
        list[str] | None,
        typer.Option(
            "--perturbation",
            metavar="NAME",
            help="Only this perturbation ('clean' for unperturbed data); repeatable.",
        ),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", metavar="NAME", help="Only this metric; repeat for several."),
    ] = None,
    run: Annotated[
        list[str] | None,
        typer.Option(
            "--run",
            metavar="ID",
            help="Only cells written by this run; an id prefix as shown by --runs is enough.",
        ),
    ] = None,
    pivot: Annotated[
        bool,
        typer.Option(
            "--pivot",
            help="Model × corruption table: clean accuracy and the accuracy under each corruption averaged over "
            "its severities, in %; split into several tables to fit the terminal.",
        ),
    ] = False,
    wide: Annotated[
        bool,
        typer.Option(
            "--wide",
            help="One row per model × perturbation × severity (plus dataset / params / seed when they vary), one "
            "column per metric.",
        ),
    ] = False,
    export: Annotated[
        Path | None,
        typer.Option(
            "--export",
            metavar="FILE",
            help="Write the selected rows (exact values; as the table of --pivot or --wide, runs with --runs) "
            "to FILE, "
            "format by extension: .csv, .json or .parquet (needs pyarrow).",
        ),
    ] = None,
    runs: Annotated[
        bool, typer.Option("--runs", help="List the runs (status, duration, command) instead of results.")
    ] = False,
) -> None:
    """Print, pivot or export the results store, or list its runs.

    Values are shown to six significant digits; --export writes them exactly.
    """
    with user_errors():
        # create=False: a mistyped --db must not leave an empty store behind; the error says how to make one
        with Store(db, create=False) as store:
            run_ids = _resolve_runs(store, run) if run else None
            all_runs = store.runs()
            results = store.results(
                run_id=run_ids, model=model, dataset=dataset, perturbation=perturbation, metric=metric
            )
        if runs:
            _show_runs(all_runs if run_ids is None else all_runs[all_runs["run_id"].isin(run_ids)], db, export)
        else:
            if pivot and wide:
                raise ValueError("--pivot and --wide are two layouts of one table; pass one of them")
            if pivot:
                _show_pivot(results, db, export, total=int(all_runs["n_results"].sum()))
            else:
                _show_results(results, db, wide, export, total=int(all_runs["n_results"].sum()))


def _show_runs(runs: pd.DataFrame, db: Path, export: Path | None) -> None:
    if export is not None:
        export_frame(runs, export)
        console.print(f"Wrote {len(runs)} run(s) to {export}", highlight=False)
    elif runs.empty:
        console.print(f"No runs in {db} yet. Run `robustlab demo` or `robustlab eval` to record one.")
    else:
        console.print(_runs_table(runs, db))


def _nothing_to_show(results: pd.DataFrame, db: Path, total: int) -> bool:
    """Say why nothing is shown (an empty store, or filters that match nothing); True when that is the case."""
    if not results.empty:
        return False
    if total == 0:
        console.print(f"No results in {db} yet. Run `robustlab demo` or `robustlab eval` to add some.")
    else:
        console.print(
            f"No results match these filters ({total} result(s) in {db}). Drop a filter, or list "
            "the runs with `robustlab results --runs`."
        )
    return True


def _show_pivot(results: pd.DataFrame, db: Path, export: Path | None, *, total: int) -> None:
    """The model × corruption table, as several tables of whole columns when one does not fit the terminal."""
    from robustlab.report.tables import ABBREVIATIONS, corruption_pivot

    if _nothing_to_show(results, db, total):
        return
    pivot = corruption_pivot(results)
    if pivot.empty:
        console.print(
            f"No corruption accuracy in this selection of {db}; `robustlab results --wide` shows one row per condition."
        )
        return
    if export is not None:
        export_frame(pivot, export)
        console.print(f"Wrote {len(pivot)} row(s) to {export}", highlight=False)
        return
    keys = [c for c in ("model", "dataset") if c in pivot.columns]
    values = [c for c in pivot.columns if c not in keys]
    shown = {c: [_fmt(v) for v in pivot[c]] for c in keys}
    shown.update({c: ["–" if v != v else f"{100 * v:.1f}" for v in pivot[c]] for c in values})
    names = {c: ABBREVIATIONS.get(c, c) for c in values}
    key_widths = {c: min(_NAME_WIDTH, max(len(c), *map(len, shown[c]))) for c in keys}
    widths = {c: max(len(names[c]), *map(len, shown[c])) for c in values}
    # each column costs its width, two characters of padding and one border
    room = console.width - 1 - sum(w + 3 for w in key_widths.values())
    chunks: list[list[str]] = [[]]
    for column in values:
        if chunks[-1] and sum(widths[c] + 3 for c in (*chunks[-1], column)) > room:
            chunks.append([])
        chunks[-1].append(column)
    for i, chunk in enumerate(chunks, 1):
        part = f" ({i}/{len(chunks)})" if len(chunks) > 1 else ""
        table = Table(title=f"Accuracy (%) under each corruption, mean over severities{part}", title_justify="left")
        for c in keys:
            table.add_column(c, overflow="fold", max_width=key_widths[c])
        for c in chunk:
            table.add_column(names[c], justify="right", no_wrap=True, min_width=widths[c])
        for row in range(len(pivot)):
            table.add_row(*(shown[c][row] for c in keys), *(shown[c][row] for c in chunk))
        console.print(table)
    legend = [f"{names[c]}={c}" for c in values if names[c] != c]
    if legend:
        console.print(f"{db} · " + ", ".join(legend), highlight=False, soft_wrap=False)


def _show_results(results: pd.DataFrame, db: Path, pivot: bool, export: Path | None, *, total: int) -> None:
    wide = pivot_results(results) if pivot and not results.empty else None
    if export is not None:
        written = results if wide is None else wide
        export_frame(written, export)
        console.print(f"Wrote {len(written)} row(s) to {export}", highlight=False)
    if _nothing_to_show(results, db, total) or export is not None:
        return  # exporting is for large selections; printing them too would only scroll the message away
    if wide is not None:
        shown = wide.reset_index().rename(columns={"params_json": "params"})
        _, constants = _split_constant(
            results.rename(columns={"params_json": "params"}), ("dataset", "split", "params", "seed")
        )
        title = f"{len(shown)} condition(s) × {wide.shape[1]} metric(s) in {db}"
    else:
        shown, constants = _split_constant(_display_frame(results), _LONG_ORDER)
        title = f"{len(shown)} result(s) in {db}"
    console.print(_render(shown, title, constants))
