"""`robustlab repair ar2`: CAM-guided repair (AR2) of a pretrained CNN, or a baseline under the same budget."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from robustlab.cli._app import app
from robustlab.cli._common import (
    batch_callback,
    console,
    data_dir_option,
    db_option,
    device_option,
    make_progress,
    refuse_overwrite,
    user_errors,
)

repair_app = typer.Typer(help="Repair a pretrained model against corruptions.", no_args_is_help=True)
app.add_typer(repair_app, name="repair")


@repair_app.command("ar2")
def ar2_command(
    model: str = typer.Option(..., "--model", help="CNN with a GAP + linear head, e.g. cifar:resnet20."),
    data: str = typer.Option("cifar10", "--data", help="Dataset name or path (the train split repairs)."),
    corruption: str = typer.Option(
        ..., "--corruption", help="A corruption name, 'all' (one model per test corruption) or 'unified'."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Checkpoint to write (.safetensors or .pt); with --corruption all, a folder."
    ),
    baseline: str | None = typer.Option(
        None,
        "--baseline",
        help="Run a baseline instead: finetune, refine or augmix (same step budget), or bn_adapt (BatchNorm "
        "statistics re-estimated on corrupted training images, no gradient step).",
    ),
    iterations: int = typer.Option(3, "--iterations", min=1, help="Outer iterations T."),
    epochs: int = typer.Option(1, "--epochs", min=1, help="Epochs per stage (unless --steps)."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Optimiser steps per stage (overrides --epochs)."),
    refine_steps: int | None = typer.Option(None, "--refine-steps", min=1, help="Steps per refinement stage."),
    finetune_steps: int | None = typer.Option(None, "--finetune-steps", min=1, help="Steps per fine-tuning stage."),
    alpha: float = typer.Option(0.5, "--alpha", help="Weight of the clean-CAM term of L_CAM."),
    severity: int = typer.Option(3, "--severity", min=1, max=5, help="Training corruption severity."),
    refine_lr: float | None = typer.Option(
        None, "--refine-lr", help="Peak learning rate of each refinement stage [default: 0.3]."
    ),
    finetune_lr: float | None = typer.Option(
        None, "--finetune-lr", help="Peak learning rate of each fine-tuning (and AugMix) stage [default: 0.003]."
    ),
    schedule: str = typer.Option("cosine", "--schedule", help="Learning rate within each stage: cosine or constant."),
    k: int | None = typer.Option(
        None, "--k", min=1, help="Classes per image whose CAMs are aligned [default: 3 for <= 10 classes, else 5]."
    ),
    val_fraction: float = typer.Option(
        0.1, "--val-fraction", help="Share of the training data held out (corrupted) to select the returned model."
    ),
    batch_size: int = typer.Option(128, "--batch-size", min=1),
    n_train: int | None = typer.Option(None, "--n-train", min=2, help="Use only the first N training images."),
    eval_suite: str | None = typer.Option(
        None,
        "--eval-suite",
        help="Suite evaluated on the test split after repair (default: clean + the corruption at severities "
        "1-5; 'clean,corruptions' for unified). 'none' skips evaluation.",
    ),
    n_eval: int | None = typer.Option(None, "--n-eval", min=1, help="Evaluate on the first N test images."),
    db: Path = db_option(),
    seed: int = typer.Option(0, "--seed"),
    data_dir: Path | None = data_dir_option(),
    device: str | None = device_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing checkpoints (otherwise refused)."),
) -> None:
    """Repair MODEL against a corruption with AR2 (or --baseline), save it, and evaluate it into the store."""
    import torch

    from robustlab.data import head, load_dataset
    from robustlab.engine import evaluate
    from robustlab.methods.ar2 import UNIFIED, AR2Config, check_corruption, repair
    from robustlab.models import create_model
    from robustlab.models.checkpoint import save_checkpoint
    from robustlab.perturb import TEST_CORRUPTIONS
    from robustlab.store import Store
    from robustlab.train.distributed import launched_by_torchrun

    with user_errors():
        if launched_by_torchrun():
            raise ValueError("robustlab repair runs in one process (AR2 reads CAMs from the unwrapped model): "
                             "start it with `robustlab repair ...`, not torchrun")  # fmt: skip
        method = baseline or "ar2"
        if corruption == "all":
            targets = list(TEST_CORRUPTIONS)
        else:
            targets = [corruption if corruption == UNIFIED else check_corruption(corruption)]
        if corruption == "all" and out.exists() and not out.is_dir():
            raise FileExistsError(f"--out {out} is a file; with --corruption all it must be a folder")
        refuse_overwrite([out / f"{t}.safetensors" for t in targets] if corruption == "all" else [out], overwrite)
        rates: dict[str, Any] = {name: value for name, value in (("refine_lr", refine_lr), ("finetune_lr", finetune_lr))
                                 if value is not None}  # fmt: skip
        config = AR2Config(
            iterations=iterations, alpha=alpha, severity=severity, refine_epochs=epochs, finetune_epochs=epochs,
            refine_steps=refine_steps or steps, finetune_steps=finetune_steps or steps, schedule=schedule, k=k,
            val_fraction=val_fraction, batch_size=batch_size, seed=seed,
            **rates,
        )  # fmt: skip
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        train = head(load_dataset(data, split="train", data_dir=data_dir), n_train)
        test = None if eval_suite == "none" else head(load_dataset(data, split="test", data_dir=data_dir), n_eval)
        source = create_model(model, class_names=train.class_names, data_dir=data_dir, device=dev, seed=seed)
        run_config = {"model": model, "data": data, "corruption": corruption, "method": method,
                      "n_train": len(train), "eval_suite": eval_suite, "n_eval": None if test is None else len(test),
                      "ar2": config.to_dict()}  # fmt: skip
        command = f"robustlab repair ar2 --model {model} --data {data} --corruption {corruption} --out {out}"
        if corruption == "all":
            out.mkdir(parents=True, exist_ok=True)
        summary = []
        # AugMix never sees the target corruption: with --corruption all one model (selected on held-out images
        # corrupted by the whole pool) is trained once and written for every corruption
        once = method == "augmix" and corruption == "all"
        shared = None
        with Store(db) as store, store.run(command, run_config, device=str(dev)) as run_id, make_progress() as progress:
            for target in targets:
                path = out / f"{target}.safetensors" if corruption == "all" else out
                task = progress.add_task(f"{method} {target}", total=None)

                def callback(event: dict, task: Any = task, target: str = target) -> None:
                    if event["kind"] == "step":
                        progress.update(task, completed=event["step"], total=event["total"],
                                        description=f"{target}: {event['description']}")  # fmt: skip

                fresh = shared is None or not once
                if fresh:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        result = repair(source, train, corruption=UNIFIED if once else target, config=config,
                                        method=method, device=dev, checkpoint=path, callback=callback)  # fmt: skip
                    shared = result
                    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
                else:
                    assert shared is not None  # set by the first target's repair
                    result, messages = shared, []
                    save_checkpoint(result.model, path)
                if result.steps == 0:  # bn_adapt and shared models take no optimiser step: close the bar
                    progress.update(task, completed=1, total=1)
                name = f"file:{path}"
                for entry in result.history if fresh else ():
                    if entry["stage"] == "select":
                        for metric in ("val_corrupted_acc", "val_clean_acc"):
                            store.add_result(
                                run_id, name, train.name, f"heldout_{metric.removeprefix('val_')}", entry[metric],
                                split="train_heldout", perturbation=UNIFIED if once else target,
                                severity=config.severity, params={"iteration": entry["iteration"], "method": method},
                                seed=seed,
                            )  # fmt: skip
                row = {"corruption": target, "result": result, "path": path, "warnings": messages,
                       "shared": not fresh}  # fmt: skip
                if test is not None:
                    suite = eval_suite or ("clean,corruptions" if target == UNIFIED else f"clean,{target}")
                    on_eval = batch_callback(progress, progress.add_task(f"evaluating {target}", total=None))

                    cells = evaluate(result.model, test, suite, store=store, run_id=run_id, model_name=name,
                                     seed=seed, batch_size=batch_size, device=dev, callback=on_eval)  # fmt: skip
                    row["cells"] = cells
                summary.append(row)
    rounds = 1 if method == "bn_adapt" else iterations
    for row in summary:
        r = row["result"]
        how = "the model trained for the first corruption" if row["shared"] else (
            f"iteration {r.selected_iteration} of {rounds} selected, {r.steps} steps")  # fmt: skip
        console.print(
            f"{row['corruption']}: held-out ({r.n_val} images) corrupted {100 * r.initial_val_corrupted_acc:.2f} % "
            f"-> {100 * r.val_corrupted_acc:.2f} %, clean {100 * r.initial_val_clean_acc:.2f} % -> "
            f"{100 * r.val_clean_acc:.2f} % ({how}) -> [bold]{escape(str(row['path']))}[/]", highlight=False,
        )  # fmt: skip
        for message in row["warnings"]:
            console.print(f"  [yellow]warning:[/] {escape(message)}", highlight=False)
        for cell in row.get("cells", []):
            if cell.key.metric == "accuracy":
                sev = f" s{cell.key.severity}" if cell.key.severity else ""
                console.print(f"  test {cell.key.perturbation}{sev}: {100 * cell.value:.2f} %")
    console.print(f"recorded in [bold]{escape(str(db))}[/]; evaluate further with --model file:PATH")
