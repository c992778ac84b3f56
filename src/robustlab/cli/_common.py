"""Helpers shared by the CLI verbs: their common options, one-line messages for library errors, progress bars."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from robustlab.engine.loading import load_model_and_data  # noqa: F401  (re-exported for the verbs)

console = Console()
err_console = Console(stderr=True)


# options that several verbs share, declared once so that they read and behave the same everywhere
def db_option(help: str = "Results store (SQLite).") -> Any:
    return typer.Option(Path("robustlab.db"), "--db", help=help)


def data_dir_option(help: str = "The shared data folder (datasets, weights/).") -> Any:
    return typer.Option(None, "--data-dir", envvar="ROBUSTLAB_DATA", help=help)


def device_option() -> Any:
    return typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: cuda if present).")

# errors a user can fix: shown as one line, never as a traceback
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, RuntimeError, ImportError, KeyError)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Print library errors caused by bad input as a one-line message and exit with status 1."""
    try:
        yield
    except USER_ERRORS as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        err_console.print(f"[bold red]error:[/] {msg}", highlight=False)
        raise typer.Exit(1) from None


def refuse_overwrite(paths: list[Any], overwrite: bool) -> None:
    """Raise FileExistsError naming the outputs that already exist, unless the user passed ``--overwrite``."""
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} already exist(s); pass --overwrite or choose another --out")


def make_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


def batch_callback(progress: Progress, task_id: Any) -> Callable[[dict[str, Any]], None]:
    """Follow an evaluation's ``{"kind": "batch", "done", "total"}`` events on a rich task."""

    def callback(event: dict[str, Any]) -> None:
        if event.get("kind") == "batch":
            progress.update(task_id, completed=event["done"], total=event["total"])

    return callback


def fit_callback(progress: Progress, task_id: Any, label: str = "") -> Callable[[dict[str, Any]], None]:
    """Follow ``train.fit``'s step events on a rich task: step count, epoch and running loss."""

    def callback(event: dict[str, Any]) -> None:
        if event.get("kind") == "step":
            description = f"{label}epoch {event.get('epoch')}  loss {event.get('loss', 0):.3f}"
            progress.update(task_id, completed=event["step"], total=event.get("total"), description=description)

    return callback


def progress_callback(progress: Progress, task_id: Any) -> Callable[[dict[str, Any]], None]:
    """Adapt the library's event callbacks (``{"kind": ..., "step": ..., "total": ...}``) to a rich task."""

    def callback(event: dict[str, Any]) -> None:
        total = event.get("total")
        if total is not None:
            progress.update(task_id, total=total)
        if "completed" in event:
            progress.update(task_id, completed=event["completed"])
        elif "done" in event:
            progress.update(task_id, completed=event["done"])
        elif "step" in event:
            progress.update(task_id, completed=event["step"])
        if "description" in event:
            progress.update(task_id, description=event["description"])

    return callback
