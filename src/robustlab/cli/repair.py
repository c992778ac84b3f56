"""`robustlab repair ar2`: CAM-guided repair (AR2) of a pretrained CNN, or a baseline under the same budget."""

from __future__ import annotations

from pathlib import Path

import typer

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
        None, "--baseline", help="Run a baseline with the same step budget instead: finetune, refine or augmix."
    ),
    iterations: int = typer.Option(3, "--iterations", min=1, help="Outer iterations T."),
    epochs: int = typer.Option(1, "--epochs", min=1, help="Epochs per stage (unless --steps)."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Optimiser steps per stage (overrides --epochs)."),
    refine_steps: int | None = typer.Option(None, "--refine-steps", min=1, help="Steps per refinement stage."),
    finetune_steps: int | None = typer.Option(None, "--finetune-steps", min=1, help="Steps per fine-tuning stage."),
    alpha: float = typer.Option(0.5, "--alpha", help="Weight of the clean-CAM term of L_CAM."),
    severity: int = typer.Option(3, "--severity", min=1, max=5, help="Training corruption severity."),
    lr: float = typer.Option(0.01, "--lr", help="Learning rate of both stages."),
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
    from robustlab.perturb import TEST_CORRUPTIONS
    from robustlab.store import Store

    with user_errors():
        method = baseline or "ar2"
        if corruption == "all":
            targets = list(TEST_CORRUPTIONS)
        else:
            targets = [corruption if corruption == UNIFIED else check_corruption(corruption)]
        if corruption == "all" and out.exists() and not out.is_dir():
            raise FileExistsError(f"--out {out} is a file; with --corruption all it must be a folder")
        refuse_overwrite([out / f"{t}.safetensors" for t in targets] if corruption == "all" else [out], overwrite)
        config = AR2Config(
            iterations=iterations, alpha=alpha, severity=severity, refine_epochs=epochs, finetune_epochs=epochs,
            refine_steps=refine_steps or steps, finetune_steps=finetune_steps or steps, refine_lr=lr, finetune_lr=lr,
            batch_size=batch_size, seed=seed,
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
        with Store(db) as store, store.run(command, run_config, device=str(dev)) as run_id, make_progress() as progress:
            for target in targets:
                path = out / f"{target}.safetensors" if corruption == "all" else out
                task = progress.add_task(f"{method} {target}", total=None)

                def callback(event: dict, task: int = task, target: str = target) -> None:
                    if event["kind"] == "step":
                        progress.update(task, completed=event["step"], total=event["total"],
                                        description=f"{target}: {event['description']}")  # fmt: skip

                result = repair(source, train, corruption=target, config=config, method=method, device=dev,
                                checkpoint=path, callback=callback)  # fmt: skip
                name = f"file:{path}"
                for entry in result.history:
                    if entry["stage"] == "select":
                        for metric in ("val_corrupted_acc", "val_clean_acc"):
                            store.add_result(
                                run_id, name, train.name, f"heldout_{metric.removeprefix('val_')}", entry[metric],
                                split="train_heldout", perturbation=target, severity=config.severity,
                                params={"iteration": entry["iteration"], "method": method}, seed=seed,
                            )  # fmt: skip
                row = {"corruption": target, "selected": result.selected_iteration, "steps": result.steps,
                       "heldout": result.val_corrupted_acc, "path": path}  # fmt: skip
                if test is not None:
                    suite = eval_suite or ("clean,corruptions" if target == UNIFIED else f"clean,{target}")
                    on_eval = batch_callback(progress, progress.add_task(f"evaluating {target}", total=None))

                    cells = evaluate(result.model, test, suite, store=store, run_id=run_id, model_name=name,
                                     seed=seed, batch_size=batch_size, device=dev, callback=on_eval)  # fmt: skip
                    row["cells"] = cells
                summary.append(row)
    for row in summary:
        console.print(
            f"{row['corruption']}: selected iteration {row['selected']} of {iterations} "
            f"({row['steps']} steps, held-out corrupted acc {100 * row['heldout']:.2f} %) -> [bold]{row['path']}[/]"
        )
        for cell in row.get("cells", []):
            if cell.key.metric == "accuracy":
                sev = f" s{cell.key.severity}" if cell.key.severity else ""
                console.print(f"  test {cell.key.perturbation}{sev}: {100 * cell.value:.2f} %")
    console.print(f"recorded in [bold]{db}[/]; evaluate further with --model file:PATH")
