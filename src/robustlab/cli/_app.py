"""The typer application object; verb modules register their commands on it.

Help is click's plain layout (``rich_markup_mode=None``): rich's option tables squeeze the help column to about 20
characters at 80 columns and cut long words with "…" (``attention_stability`` in ``eval --suite``); click's layout
wraps whole words and never cuts. :class:`HelpGroup` lists each command's whole first sentence, wrapped, where click
would cut it with "..." too.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup


class HelpGroup(TyperGroup):
    """A command group whose help lists every command with its whole first sentence, wrapped, never cut."""

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


app = typer.Typer(
    name="robustlab",
    help="Measure, explain and repair the robustness of image classifiers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    cls=HelpGroup,
)
