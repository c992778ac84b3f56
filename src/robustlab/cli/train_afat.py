"""`robustlab train afat`: train a vision transformer with AFAT (adversarial feature alignment), evaluate it into the
store."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from robustlab.cli._common import (
    batch_callback,
    command_line,
    console,
    data_dir_option,
    data_option,
    db_option,
    device_option,
    fit_callback,
    make_progress,
    note_data,
    refuse_overwrite,
    user_errors,
)
from robustlab.cli.train import train_app

# accuracy under random 10 % noise patches and the attention cosine on the same images; after training, the
# accuracy under the patches of the C just trained (afat_patch) is added
DEFAULT_SUITE = "clean,occlusion:ratios=0.1,patch_attention_stability:ratios=0.1"


@train_app.command("afat")
def afat_command(
    model: str = typer.Option(..., "--model", help="A ViT spec, e.g. cifar:vit_tiny_patch4 or timm:vit_small_..."),
    data: str = data_option("cifar10", "Dataset name or path (the train split trains)."),
    out: Path = typer.Option(..., "--out", help="Checkpoint to write (.safetensors or .pt); load with file:OUT."),
    rho: float = typer.Option(0.1, "--rho", help="Occlusion ratio ρ: fraction of patches C occludes."),
    lam: float = typer.Option(5e-3, "--lam", help="Weight λ of the alignment loss (0 = plain training)."),
    selection: str = typer.Option("learned", "--selection", help="learned (C) or random (ablation)."),
    occlusion: str = typer.Option("noise", "--occlusion", help="noise, or drop (PatchDrop ablation)."),
    objective: str = typer.Option("align", "--objective", help="What C maximises: align, or ce (ablation)."),
    noise_space: str = typer.Option(
        "pixel", "--noise-space", help="pixel (δ ~ U[0,1] pixels) or normalized (the reference code's δ)."
    ),
    detach_clean: bool = typer.Option(False, "--detach-clean", help="Clean features as a fixed target (ablation)."),
    epochs: int = typer.Option(10, "--epochs", min=1),
    lr: float = typer.Option(5e-4, "--lr"),
    batch_size: int = typer.Option(128, "--batch-size", min=1),
    optimizer: str = typer.Option("adamw", "--optimizer", help="sgd or adamw."),
    weight_decay: float = typer.Option(0.05, "--weight-decay"),
    warmup_epochs: float = typer.Option(1.0, "--warmup-epochs"),
    pretrained: bool = typer.Option(True, "--pretrained/--scratch", help="Start from published weights."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Random crop (pad 4) + horizontal flip."),
    n_train: int | None = typer.Option(None, "--n-train", min=2, help="Use only the first N training images."),
    max_time: float | None = typer.Option(None, "--max-time", help="Stop training after this many seconds."),
    eval_suite: str = typer.Option(
        DEFAULT_SUITE,
        "--eval-suite",
        help="Suite evaluated on the test split after training (the default adds afat_patch with the trained C, "
        "e.g. add corruptions,pgd:eps=1/255,steps=5,patch_fool); 'none' skips.",
    ),
    n_eval: int | None = typer.Option(None, "--n-eval", min=1, help="Evaluate on the first N test images."),
    db: Path = db_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT (otherwise refused)."),
    data_dir: Path | None = data_dir_option(),
    device: str | None = device_option(),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Train MODEL with AFAT, save it (and its corruption model C as OUT.corruptor.pt), evaluate into the store."""
    import torch

    from robustlab.data import head, load_dataset
    from robustlab.engine import evaluate
    from robustlab.methods.afat import AFATConfig, patch_geometry, save_corruptor, train_afat
    from robustlab.models import create_model, save_checkpoint
    from robustlab.store import Store
    from robustlab.train import random_crop_flip

    with user_errors():
        corruptor_path = out.with_name(out.name + ".corruptor.pt")
        refuse_overwrite([out, corruptor_path], overwrite)
        config = AFATConfig(rho=rho, lam=lam, selection=selection, occlusion=occlusion, objective=objective,
                            noise_space=noise_space, detach_clean=detach_clean, seed=seed)  # fmt: skip
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        train = head(load_dataset(data, split="train", data_dir=data_dir), n_train)
        note_data(n_train, train)
        test = None if eval_suite == "none" else head(load_dataset(data, split="test", data_dir=data_dir), n_eval)
        clf = create_model(
            model, pretrained=pretrained, class_names=train.class_names, data_dir=data_dir, device=dev, seed=seed
        )
        patch, grid = patch_geometry(clf)  # refuse a non-ViT before any training
        run_config = {"model": model, "data": data, "n_train": len(train), "epochs": epochs, "lr": lr,
                      "batch_size": batch_size, "optimizer": optimizer, "weight_decay": weight_decay,
                      "warmup_epochs": warmup_epochs, "augment": augment, "max_time": max_time,
                      "patch_size": patch, "grid": list(grid), "afat": config.to_dict(), "eval_suite": eval_suite,
                      "n_eval": None if test is None else len(test)}  # fmt: skip
        name = f"file:{out}"
        with (
            Store(db) as store,
            store.run(command_line(), run_config, device=str(dev)) as run_id,
            make_progress() as progress,
        ):
            task = progress.add_task("afat", total=None)

            callback = fit_callback(progress, task, "afat ")

            result = train_afat(clf, train, config=config, epochs=epochs, lr=lr, batch_size=batch_size,
                                optimizer=optimizer, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
                                augment=random_crop_flip if augment else None, max_time=max_time, seed=seed,
                                device=dev, callback=callback)  # fmt: skip
            save_checkpoint(clf, out)
            if result.corruptor is not None:
                save_corruptor(result.corruptor, corruptor_path)
            for entry in result.fit.history:
                params = {"epoch": entry["epoch"], "method": "afat"}
                store.add_result(run_id, name, train.name, "train_loss", entry["train_loss"], split="train",
                                 n=len(train), params=params, seed=seed)  # fmt: skip
            if result.align_history:
                tail = result.align_history[-max(1, len(result.align_history) // 10) :]
                store.add_result(run_id, name, train.name, "align_loss_last10pct", sum(tail) / len(tail),
                                 split="train", n=len(tail), params={"method": "afat"}, seed=seed)  # fmt: skip
            cells = []
            if test is not None:
                on_eval = batch_callback(progress, progress.add_task("evaluating", total=None))

                suite = eval_suite
                if eval_suite == DEFAULT_SUITE and result.corruptor is not None:
                    suite = f"{eval_suite},afat_patch:corruptor={corruptor_path},ratio={rho}"
                cells = evaluate(clf, test, suite, store=store, run_id=run_id, model_name=name, seed=seed,
                                 batch_size=batch_size, device=dev, callback=on_eval)  # fmt: skip
    for h in result.fit.history:
        console.print(f"epoch {h['epoch']}: loss {h['train_loss']:.4f}  ({h['seconds']:.1f} s)")
    if result.fit.timed_out:
        console.print(f"stopped by --max-time after {result.fit.steps} steps")
    console.print(f"C took {result.adversary_steps} ascent steps; last L_align "
                  f"{result.align_history[-1] if result.align_history else float('nan'):.4g}")  # fmt: skip
    for cell in cells:
        value = f"{100 * cell.value:.2f} %" if cell.key.metric.endswith("accuracy") else f"{cell.value:.4f}"
        key = cell.key
        console.print(f"  test {key.perturbation} {key.params_json} {key.metric}: {value}", highlight=False)
    saved = f" and {corruptor_path}" if result.corruptor is not None else ""
    shown_out, shown_db = escape(str(out)), escape(str(db))
    console.print(f"saved [bold]{shown_out}[/]{saved} — evaluate with --model file:{shown_out}; "
                  f"recorded in [bold]{shown_db}[/]")  # fmt: skip
