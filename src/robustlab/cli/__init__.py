"""The ``robustlab`` command line: each verb module registers thin commands on the shared typer app."""

from __future__ import annotations

import logging
import os
import sys
import warnings

# importing the verb modules registers their commands
from robustlab.cli import attack as _attack  # noqa: E402,F401
from robustlab.cli import corrupt as _corrupt  # noqa: E402,F401
from robustlab.cli import demo as _demo  # noqa: E402,F401
from robustlab.cli import evaluate as _evaluate  # noqa: E402,F401
from robustlab.cli import explain as _explain  # noqa: E402,F401
from robustlab.cli import listing as _listing  # noqa: E402,F401
from robustlab.cli import models as _models  # noqa: E402,F401
from robustlab.cli import repair as _repair  # noqa: E402,F401
from robustlab.cli import report as _report  # noqa: E402,F401
from robustlab.cli import results as _results  # noqa: E402,F401
from robustlab.cli import study as _study  # noqa: E402,F401
from robustlab.cli import train as _train  # noqa: E402,F401
from robustlab.cli import train_a3 as _train_a3  # noqa: E402,F401
from robustlab.cli import train_afat as _train_afat  # noqa: E402,F401
from robustlab.cli import tta as _tta  # noqa: E402,F401
from robustlab.cli._app import HelpGroup, app
from robustlab.cli._common import cli_hints
from robustlab.runtime import tune_allocator

for _group in app.registered_groups:  # verb groups list their commands uncut, as the top level does (cli._app)
    if _group.typer_instance is not None:
        _group.typer_instance.info.cls = HelpGroup

__all__ = ["app", "main"]


def format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                   line: str | None = None) -> str:  # fmt: skip
    """A library warning as one ``warning:`` line, as errors read ``Error:`` (no file, line or source shown)."""
    return f"warning: {cli_hints(str(message))}\n"  # fixes named as flags, as in error messages


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=os.environ.get("ROBUSTLAB_LOG", "WARNING").upper(), format="%(levelname)s %(message)s")
    tune_allocator()  # batch-sized tensors reuse heap pages instead of faulting in fresh ones (robustlab.runtime)
    warnings.formatwarning = format_warning
    sys.exit(app())
