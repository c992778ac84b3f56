"""`robustlab study`: model-zoo studies after "Unlocking Noise-Resistant Vision" (architecture attributes, noise
theory)."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.markup import escape

from robustlab.cli._app import app
from robustlab.cli._common import (
    USER_ERRORS,
    command_line,
    console,
    data_dir_option,
    data_option,
    db_option,
    device_option,
    err_console,
    make_progress,
    print_error,
    progress_callback,
    refuse_overwrite,
    user_errors,
)
from robustlab.cli._progress import ProgressView

study_app = typer.Typer(
    help='Model-zoo noise studies (after "Unlocking Noise-Resistant Vision", 2025): architecture attributes '
    "and noise theory."
)
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
        f"{len(rows)} models in {time.perf_counter() - start:.1f} s -> [bold]{escape(str(out))}[/]; "
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


def _check_models(specs: list[str], data: str, *, data_dir: Path | None, pretrained: bool) -> None:
    """Build every model once on the CPU before the sweep starts, so a bad spec or missing weights fail up front.

    Raises:
        ValueError: naming each spec that cannot be built and why (all of them, not just the first).
    """
    import gc

    from robustlab.data import load_dataset
    from robustlab.models import create_model

    class_names = load_dataset(data, data_dir=data_dir).class_names  # zero-shot CLIP heads need them
    problems = []
    for spec in specs:
        try:
            create_model(
                spec,
                pretrained=pretrained,
                data_dir=data_dir,
                device="cpu",
                class_names=class_names if spec.startswith("openclip:") else None,
            )
        except USER_ERRORS as exc:
            problems.append(f"{spec}: {exc}")
        gc.collect()  # one model in memory at a time
    if problems:
        raise ValueError(
            f"{len(problems)} of {len(specs)} models cannot be built, nothing was run: " + " | ".join(problems)
        )


@study_app.command("noise")
def noise_command(
    models: str = typer.Option(..., "--models", help="Comma list of model specs, e.g. cifar:resnet20,cifar:resnet56."),
    data: str = data_option(),
    sigmas: str = typer.Option("0,0.02,0.04,0.08", "--sigmas", help="Pixel-space σ levels (0 = clean)."),
    n: int | None = typer.Option(None, "--n", min=1, help="Only the first N samples."),
    db: Path = db_option("Results store (SQLite); re-runs resume."),
    noise_at: str = typer.Option(
        "pixels",
        "--noise-at",
        help="pixels: on native pixels before the model's resize (as the theory assumes); input: after the resize.",
    ),
    backend: str = typer.Option("local", "--backend", help="local (in-process) or ray (one task per model)."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Ray cluster address (default: local Ray)."),
    retries: int = typer.Option(1, "--retries", min=0, help="Retries of a failed Ray task."),
    batch_size: int = typer.Option(128, "--batch-size", min=1),
    seed: int = typer.Option(0, "--seed"),
    device: str | None = device_option(),
    data_dir: Path | None = data_dir_option(),
    pretrained: bool = typer.Option(True, "--pretrained/--random-init"),
) -> None:
    """Accuracy under Gaussian noise for many models: robustness slope per model, rank difference across them."""
    from rich.table import Table

    from robustlab.store import Store
    from robustlab.study.noise import StudyFailed, noise_study

    failure = None
    with user_errors():
        specs = [m.strip() for m in models.split(",") if m.strip()]
        _check_models(specs, data, data_dir=data_dir, pretrained=pretrained)
        with Store(db) as store, ProgressView(err_console, "models") as view:
            try:
                result = noise_study(specs, data, sigmas, store=store, n=n, data_dir=data_dir, noise_at=noise_at,
                                     seed=seed, batch_size=batch_size, device=device, pretrained=pretrained,
                                     backend=backend, ray_address=ray_address, retries=retries,
                                     callback=view, command=command_line())  # fmt: skip
            except StudyFailed as exc:
                result, failure = exc.study, str(exc)
    table = Table(title=f"Gaussian noise on {escape(data)}")
    table.add_column("model", min_width=max(len(m) for m in result.accuracy) if result.accuracy else 5, overflow="fold")
    for s in result.sigmas:
        table.add_column(f"σ={s:g}", justify="right")
    table.add_column("slope", justify="right")
    top = result.sigmas[-1]
    table.add_column(f"RankDiff σ={top:g}", justify="right")
    for m, acc in result.accuracy.items():
        rd = result.rank_difference.get(top, {}).get(m)
        table.add_row(m, *(f"{100 * a:.2f}" for a in acc), f"{result.slope[m]:+.3f}", "" if rd is None else f"{rd:+d}")
    console.print(table)
    console.print(f"{result.new_cells} new cells in [bold]{escape(str(db))}[/]")
    if failure is not None:
        print_error(failure)
        raise typer.Exit(1)


@study_app.command("analyze")
def analyze_command(
    db: Path = db_option("Results store holding a noise sweep."),
    out: Path = typer.Option(Path("noise-study.csv"), "--out", help="CSV to write (one row per model)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
) -> None:
    """RankDiff and accuracy drop against stem kernel, resolution, pooling and pretraining; the design rules."""
    from rich.table import Table

    from robustlab.metrics.noise_study import analysis_tables, noise_rows, with_attributes
    from robustlab.store import Store
    from robustlab.study.analysis import write_analysis_csv
    from robustlab.study.attributes import stored_or_built_attributes

    with user_errors():
        refuse_overwrite([out], overwrite)
        if not db.is_file():
            raise FileNotFoundError(f"results store {db} does not exist; run robustlab study noise first")
        with Store(db) as store:
            rows = noise_rows(store.results(), store.attributes())
            if not rows:
                raise ValueError(f"{db} holds no noise sweep (run robustlab study noise --models ... first)")
            attributes, unbuilt = stored_or_built_attributes(store, sorted({r["model"] for r in rows}))
        for model, why in unbuilt.items():
            console.print(f"attributes of {model} unknown (not stored, and it cannot be built: {why})",
                          markup=False, highlight=False)  # fmt: skip
        joined = with_attributes(rows, attributes)
        grouped, verdicts = analysis_tables(joined)
        write_analysis_csv(joined, out)
    table = Table(title="RankDiff by attribute (mean ± std, n)")
    for col in ("attribute", "group", "RankDiff", "drop"):
        table.add_column(col)
    cells = {(g["attribute"], f"{g['group']:.4g}" if isinstance(g["group"], float) else str(g["group"]), g["value"]): g
             for g in grouped}  # fmt: skip
    for attribute, group in dict.fromkeys((a, g) for a, g, _ in cells):
        shown = []
        for value in ("rank_difference", "drop"):
            g = cells.get((attribute, group, value))
            shown.append("" if g is None else f"{g['mean']:+.3f} ± {g['std']:.3f} (n={g['n']})")
        table.add_row(attribute, group, *shown)
    console.print(table)
    for rule, verdict in verdicts.items():
        console.print(f"{rule}: [bold]{verdict}[/]")
    console.print(f"{len(joined)} rows -> [bold]{escape(str(out))}[/]")
