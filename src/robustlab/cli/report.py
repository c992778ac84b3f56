"""`robustlab report`: one self-contained HTML page from the results store."""

from __future__ import annotations

from pathlib import Path

import typer

from robustlab.cli._app import app
from robustlab.cli._common import console, db_option, user_errors


@app.command("report")
def report_command(
    db: Path = db_option(),
    out: Path = typer.Option(Path("robustlab-report.html"), "--out", help="HTML file to write."),
    title: str = typer.Option("robustlab report", "--title"),
    baseline: str | None = typer.Option(
        None,
        "--baseline",
        help="A model in the store that mCE and relative mCE are normalised by (its own are 100 %); per-corruption "
        "errors are plotted relative to it.",
    ),
) -> None:
    """Write an HTML report of everything in the store: a leaderboard per dataset (clean and robust accuracy with
    95 % intervals, corruption errors, mCE, noise slope), plots with error bars, tables and provenance."""
    from robustlab.report import write_report

    with user_errors():
        path = write_report(db, out, title=title, baseline=baseline)
    console.print(f"wrote [bold]{path}[/]")
