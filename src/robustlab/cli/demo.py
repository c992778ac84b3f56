"""`robustlab demo`: the main job, offline on a fresh machine."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from robustlab.cli._app import app
from robustlab.cli._common import (
    console,
    data_dir_option,
    db_option,
    device_option,
    make_progress,
    progress_callback,
    user_errors,
)


@app.command("demo")
def demo_command(
    db: Path = db_option(),
    out: Path = typer.Option(Path("robustlab-report.html"), "--out", help="HTML report to write."),
    data_dir: Path | None = data_dir_option("Shared data folder; with CIFAR-10 there, use it."),
    n: int | None = typer.Option(None, "--n", min=1, help="Evaluate only the first N test images."),
    max_seconds: float = typer.Option(150.0, "--max-seconds", min=1, help="Training time budget (digits)."),
    device: str | None = device_option(),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Train or load a model, measure it clean, under 15 corruptions and under noise; store it all; write a report."""
    from robustlab.demo import run_demo

    with user_errors(), make_progress() as progress:
        task = progress.add_task("starting", total=None)

        callback = progress_callback(progress, task)  # stages, training steps, evaluation groups and batches

        result = run_demo(
            db=db,
            out=out,
            data_dir=data_dir,
            n=n,
            max_seconds=max_seconds,
            seed=seed,
            device=device,
            callback=callback,
        )

    table = Table(title=f"{escape(result.model)} on {escape(result.dataset)}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("clean accuracy", f"{100 * result.clean_accuracy:.2f} %")
    if "mean_corruption_error" in result.summary:
        table.add_row("mean corruption error (15 corruptions × 5 severities)",
                      f"{100 * result.summary['mean_corruption_error']:.2f} %")  # fmt: skip
    for sigma, acc in result.noise_accuracy.items():
        table.add_row(f"accuracy under gaussian noise σ={sigma:g}", f"{100 * acc:.2f} %")
    if "noise_slope" in result.summary:
        table.add_row("noise slope (accuracy per unit σ)", f"{result.summary['noise_slope']:+.3f}")
    console.print(table)
    console.print(
        f"{result.new_rows} new results in [bold]{escape(str(result.db))}[/]; "
        f"report: [bold]{escape(str(result.report))}[/]"
        f"  ({result.seconds:.0f} s)"
    )
