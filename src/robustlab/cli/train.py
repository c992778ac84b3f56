"""`robustlab train`: train or fine-tune a model with the one training loop; `robustlab train METHOD` trains with a
method of the papers (AFAT, A3; each method module adds its subcommand to ``train_app``)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from robustlab.cli._app import app
from robustlab.cli._common import (
    console,
    data_dir_option,
    data_option,
    device_option,
    fit_callback,
    make_progress,
    note_data,
    refuse_overwrite,
    user_errors,
)

train_app = typer.Typer(help="Train or fine-tune a model (plain), or with a method: robustlab train METHOD --help.")
app.add_typer(train_app, name="train")


@train_app.callback(invoke_without_command=True)
def train_command(
    ctx: typer.Context,
    model: str | None = typer.Option(None, "--model", help="Model spec, e.g. cifar:resnet20 or cifar:small_cnn."),
    data: str = data_option("cifar10", "Dataset name or path (train split is used)."),
    out: Path | None = typer.Option(
        None, "--out", help="Checkpoint to write (.safetensors or .pt); load with file:OUT."
    ),
    epochs: int = typer.Option(10, "--epochs", min=1),
    lr: float = typer.Option(0.05, "--lr"),
    batch_size: int = typer.Option(128, "--batch-size", min=1),
    optimizer: str = typer.Option("sgd", "--optimizer", help="sgd or adamw."),
    weight_decay: float = typer.Option(5e-4, "--weight-decay"),
    warmup_epochs: float = typer.Option(1.0, "--warmup-epochs"),
    pretrained: bool = typer.Option(True, "--pretrained/--scratch", help="Start from published weights."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Random crop (pad 4) + horizontal flip."),
    max_time: float | None = typer.Option(None, "--max-time", help="Stop after this many seconds."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT's training state."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT (otherwise refused)."),
    data_dir: Path | None = data_dir_option(),
    device: str | None = device_option(),
    seed: int = typer.Option(0, "--seed", help="Seed of the initial weights, the data order and the augmentation."),
) -> None:
    """Train (or fine-tune) a model and save it as a checkpoint `create_model("file:OUT")` reloads."""
    from robustlab.data import load_dataset
    from robustlab.models import create_model, save_checkpoint
    from robustlab.train import fit, random_crop_flip
    from robustlab.train.distributed import rank

    if ctx.invoked_subcommand is not None:
        return
    if model is None or out is None:
        missing = " and ".join(f"--{name}" for name, v in (("model", model), ("out", out)) if v is None)
        raise typer.BadParameter(f"plain training needs {missing} (or name a method: robustlab train METHOD ...)")
    with user_errors():
        if not resume:
            refuse_overwrite([out], overwrite)
        train = load_dataset(data, split="train", data_dir=data_dir)
        note_data(None, train)
        test = load_dataset(data, split="test", data_dir=data_dir)
        clf = create_model(
            model, pretrained=pretrained, class_names=train.class_names, data_dir=data_dir, device=device, seed=seed
        )
        state = out.with_name(out.name + ".train_state.pt")
        with make_progress() as progress:
            task = progress.add_task("training", total=None)

            callback = fit_callback(progress, task)

            result = fit(
                clf,
                train,
                val_data=test,
                epochs=epochs,
                lr=lr,
                batch_size=batch_size,
                optimizer=optimizer,
                weight_decay=weight_decay,
                warmup_epochs=warmup_epochs,
                augment=random_crop_flip if augment else None,
                checkpoint=state,
                resume=resume,
                max_time=max_time,
                seed=seed,
                device=device,
                callback=callback,
            )
        if rank() == 0:
            save_checkpoint(clf, out)
    if rank() != 0:
        return
    for h in result.history:
        val = "" if h["val_acc"] is None else f"  val acc {100 * h['val_acc']:.2f} %"
        console.print(f"epoch {h['epoch']}: loss {h['train_loss']:.4f}{val}  ({h['seconds']:.1f} s)")
    if result.timed_out:
        console.print(
            f"stopped by --max-time after {result.steps} steps (epoch {result.epochs} complete); "
            "re-run with --resume to continue"
        )
    console.print(f"saved [bold]{escape(str(out))}[/] — evaluate with --model file:{escape(str(out))}")
