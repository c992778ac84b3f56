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
    baseline: str | None = typer.Option(None, "--baseline", help="Model to show per-corruption errors against."),
) -> None:
    """Write an HTML report (plots embedded) of everything in the store: curves, error bars, tables, provenance."""
    from robustlab.report import write_report

    with user_errors():
        path = write_report(db, out, title=title, baseline=baseline)
    console.print(f"wrote [bold]{path}[/]")
