"""The typer application object; verb modules register their commands on it."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="robustlab",
    help="Measure, explain and repair the robustness of image classifiers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
