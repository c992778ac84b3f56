"""`robustlab study`: model-zoo studies of seed 004 (architecture attributes, noise theory)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from robustlab.cli._app import app
from robustlab.cli._common import console, make_progress, progress_callback, user_errors

study_app = typer.Typer(help="Model-zoo studies (seed 004): architecture attributes and noise theory.")
app.add_typer(study_app, name="study")


@study_app.command("attributes")
def attributes_command(
    out: Path = typer.Option(Path("attributes.csv"), "--out", help="CSV to write."),
    models: str | None = typer.Option(
        None, "--models", help="Comma list of timm names (default: every tag in timm.list_pretrained())."
    ),
) -> None:
    """Architecture attributes of timm models, built on the meta device (no weights, no memory)."""
    from robustlab.study.attributes import attribute_table, coverage, write_attributes_csv

    with user_errors():
        tags = [m.strip() for m in models.split(",") if m.strip()] if models else None
        start = time.perf_counter()
        with make_progress() as progress:
            task = progress.add_task("attributes", total=None)
            rows = attribute_table(tags, callback=progress_callback(progress, task))
        write_attributes_csv(rows, out)
        cov = coverage(rows)
    console.print(
        f"{len(rows)} models in {time.perf_counter() - start:.1f} s -> [bold]{out}[/]; "
        f"built {100 * cov['built']:.1f} %, all attributes determined {100 * cov['determined']:.1f} %"
    )


@study_app.command("theory")
def theory_command() -> None:
    """Print the closed-form noise factors: stem gain, downsampling energy, pooling bias, CLIP-vs-Inception."""
    from robustlab.study import theory

    for k in (3, 5, 7, 11):
        console.print(f"{k}x{k} box stem: std gain {theory.box_noise_gain(k):.4f}, variance gain {1 / k**2:.4f}")
    for s in (2, 4):
        console.print(f"anti-aliased {s}x downsampling keeps {theory.downsample_noise_energy(s):.4f} of noise energy")
    for w in (2, 3):
        st = theory.pooling_noise_stats(w)
        console.print(f"{w}x{w} pooling of N(0,1): avg bias 0, MSE {st['avg_mse']:.4f}; "
                      f"max bias {st['max_bias']:.4f}, MSE {st['max_mse']:.4f}")  # fmt: skip
    console.print(f"CLIP vs Inception normalisation worst-case amplification: {theory.clip_vs_inception_factor()}")


@study_app.command("noise")
def noise_command(
    models: str = typer.Option(..., "--models", help="Comma list of model specs, e.g. cifar:resnet20,cifar:resnet56."),
    data: str = typer.Option(..., "--data", help="Dataset name or path."),
    sigmas: str = typer.Option("0,0.02,0.04,0.08", "--sigmas", help="Pixel-space σ levels (0 = clean)."),
    n: int | None = typer.Option(None, "--n", min=1, help="Only the first N samples."),
    db: Path = typer.Option(Path("robustlab.db"), "--db", help="Results store (SQLite); re-runs resume."),
    noise_at: str = typer.Option("input", "--noise-at", help="input (after resize) or pixels (same-size data only)."),
    batch_size: int = typer.Option(128, "--batch-size", min=1),
    seed: int = typer.Option(0, "--seed"),
    device: str | None = typer.Option(None, "--device"),
    data_dir: Path | None = typer.Option(None, "--data-dir", envvar="ROBUSTLAB_DATA"),
    pretrained: bool = typer.Option(True, "--pretrained/--random-init"),
) -> None:
    """Accuracy under Gaussian noise for many models: robustness slope per model, rank difference across them."""
    from rich.table import Table

    from robustlab.store import Store
    from robustlab.study.noise import noise_study

    with user_errors():
        specs = [m.strip() for m in models.split(",") if m.strip()]
        with Store(db) as store, make_progress() as progress:
            task = progress.add_task("models", total=len(specs))

            def callback(event: dict) -> None:
                if event["kind"] == "model":
                    progress.update(task, completed=event["done"], description=event["description"])

            result = noise_study(specs, data, sigmas, store=store, n=n, data_dir=data_dir, noise_at=noise_at,
                                 seed=seed, batch_size=batch_size, device=device, pretrained=pretrained,
                                 callback=callback)  # fmt: skip
    table = Table(title=f"Gaussian noise on {data}")
    table.add_column("model")
    for s in result.sigmas:
        table.add_column(f"σ={s:g}", justify="right")
    table.add_column("slope", justify="right")
    top = result.sigmas[-1]
    table.add_column(f"RankDiff σ={top:g}", justify="right")
    for m, acc in result.accuracy.items():
        rd = result.rank_difference.get(top, {}).get(m)
        table.add_row(m, *(f"{100 * a:.2f}" for a in acc), f"{result.slope[m]:+.3f}", "" if rd is None else f"{rd:+d}")
    console.print(table)
    console.print(f"{result.new_cells} new cells in [bold]{db}[/]")
