"""Helpers shared by the CLI verbs: their common options, one-line messages for library errors, progress bars."""

from __future__ import annotations

import contextlib
import importlib
import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console()
err_console = Console(stderr=True)


# options that several verbs share, declared once so that they read and behave the same everywhere
def db_option(help: str = "Results store (SQLite).") -> Any:
    return typer.Option(Path("robustlab.db"), "--db", help=help)


CIFAR10_NOTE = (
    "cifar10 is the shared JPEG-q75 copy (mean PSNR 30.5 dB, not clean pixels) unless cifar-10-batches-py/ is in "
    "the data folder; cifar10_exact is the 932 bit-exact test images"
)


def data_option(default: Any = ..., help: str = "Dataset name (cifar10, imagenet_sample, digits...) or path.") -> Any:
    return typer.Option(default, "--data", help=f"{help} {CIFAR10_NOTE}.")


def data_dir_option(help: str = "The shared data folder (datasets, weights/).") -> Any:
    return typer.Option(None, "--data-dir", envvar="ROBUSTLAB_DATA", help=help)


def device_option() -> Any:
    return typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: cuda if present).")


# bring your own model: how a network from the user's own file is built and fed (robustlab.models.custom)
def weights_option() -> Any:
    return typer.Option(None, "--weights", help="State dict for --model (safetensors or torch, weights_only=True).")


def mean_option() -> Any:
    return typer.Option(None, "--mean", help="Your network's normalisation mean, e.g. 0.485,0.456,0.406.")


def std_option() -> Any:
    return typer.Option(None, "--std", help="Your network's normalisation std, e.g. 0.229,0.224,0.225.")


def input_size_option() -> Any:
    return typer.Option(
        None, "--input-size", help="Your network's input: 32, 224x224 or 3,32,32 (default: the data's)."
    )


def num_classes_option() -> Any:
    return typer.Option(None, "--num-classes", min=1, help="Your network's outputs (default: read off one forward).")


MODEL_HELP = (
    "Model spec (robustlab list models), a checkpoint file:PATH, or your own network as path/to/file.py:ClassName "
    "or package.module:factory (with --weights, --mean, --std, --input-size, --num-classes)."
)


def _numbers(text: str | None, flag: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in re.split(r"[,x\s]+", text.strip()) if v]
    except ValueError:
        raise ValueError(f"{flag} takes numbers separated by commas, e.g. 0.5,0.5,0.5; got {text!r}") from None


def load_model_and_data(
    model: str,
    data: str,
    *,
    mean: str | None = None,
    std: str | None = None,
    input_size: str | None = None,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """The engine's :func:`~robustlab.engine.loading.load_model_and_data` with the flags' text parsed
    (``--mean 0.5,0.5,0.5``, ``--input-size 3,32,32`` or ``224x224``)."""
    from robustlab.engine.loading import load_model_and_data as load
    from robustlab.models import is_user_model

    given = [flag for flag, v in (("--mean", mean), ("--std", std), ("--input-size", input_size)) if v is not None]
    if given and not is_user_model(model):
        raise ValueError(f"{', '.join(given)} describe your own network (--model path/to/file.py:ClassName); "
                         f"{model} brings its own normalisation and input size")  # fmt: skip
    return load(model, data, mean=_numbers(mean, "--mean"), std=_numbers(std, "--std"), input_size=_sizes(input_size),
                **kwargs)  # fmt: skip


def _sizes(text: str | None) -> list[int] | None:
    values = _numbers(text, "--input-size")
    if values is None:
        return None
    if any(v != int(v) or v < 1 for v in values):
        raise ValueError(f"--input-size takes positive whole numbers, e.g. 32, 224x224 or 3,32,32; got {text!r}")
    return [int(v) for v in values]


# errors a user can fix: shown as one line, never as a traceback
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, RuntimeError, ImportError, KeyError)

# library messages name Python arguments; on the command line the same fix is a flag
_CLI_HINTS: tuple[tuple[str, str], ...] = (
    (r"\bpretrained=False\b", "--random-init"),
    (r"\bdata_dir=(?![\w'\"])", "--data-dir"),
    (r"\bweights=(?=<)", "--weights "),
    (r"create_model\('((?:file|[\w.]+):[^']*)'\)", r"--model \1"),
)


def cli_hints(message: str) -> str:
    """A library message with its Python-argument fixes rewritten as the CLI flags that do the same."""
    for pattern, flag in _CLI_HINTS:
        message = re.sub(pattern, flag, message)
    return message


def print_error(message: str) -> None:
    """Print ``Error: message`` on stderr as click does for usage errors, square brackets and paths intact."""
    err_console.print(f"[bold red]Error:[/] {escape(cli_hints(message))}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Print library errors caused by bad input as a one-line message and exit with status 1."""
    try:
        yield
    except USER_ERRORS as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print_error(str(msg))
        raise typer.Exit(1) from None


def _current_context() -> Any:
    # typer >= 0.24 runs on its own vendored copy of click, older typer on click itself
    try:
        module = importlib.import_module("typer._click.globals")
    except ImportError:  # pragma: no cover - older typer
        module = importlib.import_module("click")
    return module.get_current_context()


def command_line() -> str:
    """The running command as the user gave it: ``robustlab <verb> ...`` with every option set on the command line.

    Stored with each run (``robustlab results --runs``), so it must reproduce the run: ``--n`` and ``--db`` included.
    """
    ctx = _current_context()
    words = ["robustlab", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        name = param.name or ""
        source = ctx.get_parameter_source(name)
        if source is None or source.name not in ("COMMANDLINE", "PROMPT"):
            continue
        value = ctx.params.get(name)
        values = value if isinstance(value, (list, tuple)) else [value]
        if param.param_type_name != "option":
            words += [shlex.quote(str(v)) for v in values]
        elif getattr(param, "is_flag", False):
            words.append(param.opts[0] if value or not param.secondary_opts else param.secondary_opts[0])
        else:
            for item in values:
                words += [param.opts[0], shlex.quote(str(item))]
    return " ".join(words)


def note_data(n: int | None, dataset: Any) -> None:
    """Say on stderr what the data is when it matters for the numbers: the dataset's provenance notes (``cifar10``
    is a JPEG-q75 copy unless the python batches are present) and an ``--n`` beyond the dataset's length."""
    for note in getattr(dataset, "info", {}).get("notes", []):
        err_console.print(f"note: {escape(str(dataset.name))}: {escape(str(note))}", highlight=False, soft_wrap=True)
    if n is not None and n > len(dataset):
        where = f"{dataset.name} ({getattr(dataset, 'split', 'test')} split)"
        err_console.print(f"note: --n {n} exceeds the {len(dataset)} samples of {escape(where)}; using all "
                          f"{len(dataset)}", highlight=False, soft_wrap=True)  # fmt: skip


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


def batch_callback(progress: Progress, task_id: Any) -> Callable[[Any], None]:
    """Follow an evaluation's events (batches of each group) on a rich task (see cli._progress.ProgressView)."""
    from robustlab.cli._progress import ProgressView

    return ProgressView.attach(progress, task_id)


def fit_callback(progress: Progress, task_id: Any, label: str = "") -> Callable[[Any], None]:
    """Follow ``train.fit``'s step events on a rich task: step count, epoch and running loss."""
    from robustlab.cli._progress import ProgressView

    return ProgressView.attach(progress, task_id, label)


def progress_callback(progress: Progress, task_id: Any) -> Callable[[Any], None]:
    """Follow any library callback's events (typed, or dicts with a count, total and description) on a rich task."""
    from robustlab.cli._progress import ProgressView

    return ProgressView.attach(progress, task_id)
