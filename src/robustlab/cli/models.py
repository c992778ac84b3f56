"""`robustlab models`: what `create_model` accepts."""

from __future__ import annotations

import typer
from rich.table import Table

from robustlab.cli._app import app
from robustlab.cli._common import console, user_errors


@app.command("models")
def models_command(
    filter: str = typer.Argument("", help="Only specs containing this text."),
) -> None:
    """List the model specs `create_model` accepts (timm and open_clip names: any of theirs)."""
    from robustlab.models import list_models

    with user_errors():
        rows = [(spec, desc) for spec, desc in list_models() if filter.lower() in spec.lower()]
    table = Table(title="robustlab models", show_lines=False)
    table.add_column("spec", style="bold")
    table.add_column("description")
    for spec, desc in rows:
        table.add_row(spec, desc)
    console.print(table)
