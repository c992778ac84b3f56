"""`robustlab eval`: evaluate a model under a suite of perturbations, store every cell, print the headline numbers."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from robustlab.cli._app import app
from robustlab.cli._common import (
    MODEL_HELP,
    command_line,
    console,
    data_dir_option,
    data_option,
    db_option,
    device_option,
    err_console,
    input_size_option,
    load_model_and_data,
    mean_option,
    note_data,
    num_classes_option,
    std_option,
    user_errors,
    weights_option,
)
from robustlab.cli._progress import ProgressView, format_seconds


@app.command("eval")
def eval_command(
    model: str = typer.Option(..., "--model", help=MODEL_HELP),
    data: str = data_option(),
    suite: str = typer.Option(
        "clean,corruptions,noise",
        "--suite",
        help="What to measure: clean, corruptions, validation, noise, occlusion, sequences, attacks, cam_stability, "
        "attention_stability, or corruption / attack names; options after ':' as key=value, e.g. "
        "'noise:sigmas=0.02+0.04', 'fog:severities=1-3', 'pgd:eps=8/255,steps=20'.",
    ),  # fmt: skip
    n: int | None = typer.Option(None, "--n", min=1, help="Evaluate only the first N samples."),
    db: Path = db_option(),
    split: str = typer.Option("test", "--split"),
    batch_size: int = typer.Option(128, "--batch-size", min=1),
    seed: int = typer.Option(0, "--seed", help="Seed of every perturbation's per-sample generators."),
    profile: str | None = typer.Option(None, "--profile", help="Corruption parameters: imagenet, cifar or tiny."),
    device: str | None = device_option(),
    workers: int = typer.Option(0, "--workers", min=0, help="Data-loading processes (image folders)."),
    data_dir: Path | None = data_dir_option(),
    pretrained: bool = typer.Option(True, "--pretrained/--random-init"),
    weights: Path | None = weights_option(),
    mean: str | None = mean_option(),
    std: str | None = std_option(),
    input_size: str | None = input_size_option(),
    num_classes: int | None = num_classes_option(),
    corrupted_data: Path | None = typer.Option(
        None,
        "--corrupted-data",
        help="Pre-made CIFAR-10-C folder or ImageNet-C tree: 'corruptions' in the suite reads these files instead "
        "of corrupting on the fly (stored with params source=files).",
    ),  # fmt: skip
) -> None:
    """Evaluate a model on a dataset under a perturbation suite; re-running resumes and adds no duplicates."""
    import torch

    from robustlab.data import Subset
    from robustlab.engine import evaluate, summarize
    from robustlab.engine.measures import ATTACK_METRICS
    from robustlab.engine.suite import Group, build_suite, file_groups, split_file_corruptions
    from robustlab.metrics.summary import attack_label
    from robustlab.store import Store
    from robustlab.train.distributed import rank

    with user_errors():
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        clf, dataset = load_model_and_data(
            model,
            data,
            split=split,
            n=n,
            data_dir=data_dir,
            pretrained=pretrained,
            device=dev,
            weights=weights,
            mean=mean,
            std=std,
            input_size=input_size,
            num_classes=num_classes,
        )
        note_data(n, dataset)
        first, _ = dataset.get_batch([0])
        if corrupted_data is not None:
            # the suite's corruption entries come from files; everything else stays on the fly
            wanted, rest = split_file_corruptions(suite)
            groups = build_suite(rest, profile=profile, image_size=tuple(first.shape[-2:])) if rest else []
            files = file_groups(
                corrupted_data,
                corruptions=wanted,
                class_names=dataset.class_names,
                classes=getattr(dataset, "class_ids", None),
            )
            if n is not None:
                files = [Group(g.name, g.conditions, Subset(g.dataset, range(min(n, len(g.dataset))))) for g in files]
            groups += files
        else:
            groups = build_suite(suite, profile=profile, image_size=tuple(first.shape[-2:]))
        config = {
            "model": model,
            "data": data,
            "dataset": dataset.name,
            "split": split,
            "suite": suite,
            "n": len(dataset),
            "seed": seed,
            "profile": profile,
            "batch_size": batch_size,
            "dataset_info": dataset.info,
        }
        with (
            Store(db) as store,
            store.run(command_line(), config, device=str(dev)) as run_id,
            ProgressView(err_console, f"{model} on {dataset.name}") as view,
        ):
            cells = evaluate(
                clf,
                dataset,
                groups,
                store=store,
                run_id=run_id,
                model_name=model,
                seed=seed,
                batch_size=batch_size,
                device=dev,
                num_workers=workers,
                callback=view,
            )
    if rank() != 0:
        return
    new = sum(not c.resumed for c in cells)
    table = Table(title=f"{escape(model)} on {escape(dataset.name)} ({len(dataset)} images)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    labels = {"clean_accuracy": "clean accuracy", "mean_corruption_error": "mean corruption error (15 × sev.)",
              "mce": "mCE (AlexNet-normalised)", "relative_mce": "relative mCE", "validation_mean_error":
              "validation corruptions, mean error", "noise_slope": "noise slope (accuracy per unit σ)",
              "mean_flip_probability": "mean flip probability (test sequences)"}  # fmt: skip
    for name, value in summarize(cells).items():
        shown = f"{value:+.3f}" if name == "noise_slope" else f"{100 * value:.2f} %"
        table.add_row(labels.get(name, name), shown)
    by_perturbation: dict[tuple[str, str], list[float]] = {}
    for cell in cells:
        if cell.key.perturbation != "clean" and cell.value == cell.value:
            name = cell.key.perturbation
            if cell.key.metric in ATTACK_METRICS:  # one row per attack setting, not a mean over settings
                name = f"{name} ({attack_label(cell.key.params_json)})"
            by_perturbation.setdefault((name, cell.key.metric), []).append(cell.value)
    for (name, metric), values in by_perturbation.items():
        average = sum(values) / len(values)  # not `mean`: that name is the --mean option here
        if metric == "accuracy":
            table.add_row(f"{name}: mean accuracy over {len(values)} level(s)", f"{100 * average:.2f} %")
        elif metric in ATTACK_METRICS:
            table.add_row(f"{name}: {metric.replace('_', ' ')}", f"{100 * average:.2f} %")
        else:
            table.add_row(f"{name}: {metric.replace('_', ' ')}", f"{average:.4f}")
    console.print(table)
    console.print(f"{len(cells)} cells, {new} new, {len(cells) - new} already in [bold]{escape(str(db))}[/]; "
                  f"finished in {format_seconds(view.seconds)}")  # fmt: skip
