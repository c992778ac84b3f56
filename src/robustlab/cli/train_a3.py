"""`robustlab train a3`: adversarial training with the A3 (reconstructed) activation amplification/attenuation module.

Writes two checkpoints — OUT (best held-out PGD-20 epoch) and OUT with ``.last`` before its suffix — both loadable
with ``--model file:PATH`` (the A3 modules are re-attached on load), then evaluates OUT into the store.
"""

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
    make_progress,
    note_data,
    refuse_overwrite,
    user_errors,
)
from robustlab.cli.train import train_app

DEFAULT_SUITE = "clean,fgsm:eps=8/255,pgd:eps=8/255,steps=20,pgd:eps=8/255,steps=100,pgd:eps=8/255,steps=30,loss=cw"


def last_path(out: Path) -> Path:
    """Where the last epoch's checkpoint goes: ``a3.safetensors`` -> ``a3.last.safetensors``."""
    return out.with_name(f"{out.stem}.last{out.suffix}")


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as e:
        raise ValueError(f"{what} must be comma-separated numbers such as 0.5,0.75, got {text!r}") from e


@train_app.command("a3")
def a3_command(
    model: str = typer.Option(..., "--model", help="Backbone spec, e.g. cifar:resnet20 or file:base.safetensors."),
    data: str = data_option("cifar10", "Dataset name or path (train split; test split evaluates)."),
    out: Path = typer.Option(..., "--out", help="Best-PGD-20 checkpoint to write; the last one goes to OUT.last."),
    at: str = typer.Option("pgd", "--at", help="Base adversarial training: pgd (PGD-AT) or trades."),
    layers: str | None = typer.Option(
        None, "--layers", help="Comma-separated module names to attach A3 after (default: the last stage)."
    ),
    stages: int = typer.Option(1, "--stages", min=1, help="Without --layers: attach after the last N stages."),
    epochs: int = typer.Option(10, "--epochs", min=1),
    lr: float = typer.Option(0.1, "--lr"),
    milestones: str = typer.Option("0.5,0.75", "--milestones", help="Fractions of --epochs where lr *= 0.1."),
    batch_size: int = typer.Option(128, "--batch-size", min=1),
    weight_decay: float = typer.Option(5e-4, "--weight-decay"),
    eps: float = typer.Option(8 / 255, "--eps", help="Training attack radius (L-inf, [0, 1] pixels)."),
    attack_steps: int = typer.Option(10, "--attack-steps", min=1, help="Training attack steps (step 2/255)."),
    contrastive_weight: float = typer.Option(1.0, "--contrastive-weight", help="InfoNCE weight (0: off)."),
    ranking_weight: float = typer.Option(1.0, "--ranking-weight", help="Ranking hinge weight (0: off)."),
    degradation_weight: float = typer.Option(0.5, "--degradation-weight", help="Degradation CE weight (0: off)."),
    beta: float = typer.Option(1.0, "--beta", help="Scaling strength."),
    tau: float = typer.Option(0.1, "--tau", help="Gumbel-sigmoid temperature of the training mask."),
    factor: bool = typer.Option(True, "--factor/--no-factor", help="Magnitude factor (off: s = 1)."),
    fixed_mask: bool = typer.Option(False, "--fixed-mask", help="A random, untrained 0/1 mask (ablation)."),
    pretrained: bool = typer.Option(True, "--pretrained/--scratch", help="Start from published weights."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Random crop (pad 4) + horizontal flip."),
    n_train: int | None = typer.Option(None, "--n-train", min=2, help="Train on the first N training images."),
    n_val: int = typer.Option(
        256, "--n-val", min=0, help="Held-out training images (taken from the end) for per-epoch PGD-20; 0: none."
    ),
    eval_suite: str = typer.Option(DEFAULT_SUITE, "--eval-suite", help="Suite on the test split; 'none' skips."),
    n_eval: int | None = typer.Option(None, "--n-eval", min=1, help="Evaluate on the first N test images."),
    max_time: float | None = typer.Option(None, "--max-time", help="Stop training after this many seconds."),
    db: Path = db_option(),
    seed: int = typer.Option(0, "--seed"),
    data_dir: Path | None = data_dir_option(),
    device: str | None = device_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing checkpoints (otherwise refused)."),
) -> None:
    """Adversarially train MODEL with A3 (reconstructed) attached, save best and last, evaluate the best.

    A file: checkpoint that already carries A3 modules keeps them (and their settings) and continues training.
    """
    from dataclasses import asdict

    import torch

    from robustlab.data import Subset, head, load_dataset
    from robustlab.engine import evaluate
    from robustlab.methods.a3 import A3Config, A3LossConfig, added_parameters, attach, get_attachment, train_a3
    from robustlab.models import create_model, save_checkpoint
    from robustlab.store import Store
    from robustlab.train import random_crop_flip

    with user_errors():
        refuse_overwrite([out, last_path(out)], overwrite)
        config = A3Config(tau=tau, beta=beta, use_factor=factor, fixed_mask=fixed_mask)
        loss_config = A3LossConfig(
            at=at, eps=eps, steps=attack_steps, contrastive_weight=contrastive_weight,
            ranking_weight=ranking_weight, degradation_weight=degradation_weight,
        )  # fmt: skip
        fractions = _floats(milestones, "--milestones")
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        full = load_dataset(data, split="train", data_dir=data_dir)
        note_data(None, full)
        if n_val >= len(full) - 1:
            raise ValueError(f"--n-val {n_val} leaves no training images (the train split has {len(full)})")
        held = Subset(full, range(len(full) - n_val, len(full))) if n_val else None
        stop = len(full) - n_val if n_train is None else min(n_train, len(full) - n_val)
        train = Subset(full, range(stop))
        train.name = f"{full.name}[:{stop}]"
        test = None if eval_suite == "none" else head(load_dataset(data, split="test", data_dir=data_dir), n_eval)
        clf = create_model(
            model, pretrained=pretrained, class_names=full.class_names, data_dir=data_dir, device=dev, seed=seed
        )
        if get_attachment(clf) is None:
            attach(clf, None if layers is None else [v.strip() for v in layers.split(",") if v.strip()],
                   config=config, stages=stages, seed=seed)  # fmt: skip
        elif layers is not None:
            raise ValueError(f"{model} already carries A3 modules; continue training it without --layers")
        extra = added_parameters(clf)
        base_params = sum(p.numel() for p in clf.parameters()) - extra
        run_config = {"model": model, "data": data, "method": "a3 (reconstructed)", "n_train": len(train),
                      "n_val": n_val, "epochs": epochs, "lr": lr, "milestones": list(fractions),
                      "batch_size": batch_size, "a3": asdict(config), "loss": asdict(loss_config),
                      "added_parameters": extra, "eval_suite": eval_suite,
                      "n_eval": None if test is None else len(test)}  # fmt: skip
        with (
            Store(db) as store,
            store.run(command_line(), run_config, device=str(dev)) as run_id,
            make_progress() as progress,
        ):
            task = progress.add_task("A3 training", total=None)

            def callback(event: dict) -> None:
                if event.get("kind") == "step":
                    progress.update(task, description=f"A3 epoch {event['epoch']}  loss {event['loss']:.3f}")
                elif event.get("kind") == "a3_epoch" and event["val_pgd20"] is not None:
                    progress.console.print(
                        f"epoch {event['epoch']}: loss {event['train_loss']:.4f}  held-out clean "
                        f"{100 * event['val_clean']:.2f} %  PGD-20 {100 * event['val_pgd20']:.2f} %"
                    )

            result = train_a3(
                clf, train, val_data=held, epochs=epochs, lr=lr, milestones=fractions, batch_size=batch_size,
                weight_decay=weight_decay, loss_config=loss_config, augment=random_crop_flip if augment else None,
                seed=seed, device=dev, callback=callback, max_time=max_time,
            )  # fmt: skip
            save_checkpoint(clf, last_path(out))
            clf.load_state_dict(result.best_state)
            save_checkpoint(clf, out)
            name = f"file:{out}"
            for entry in result.history:
                for metric in ("val_clean", "val_pgd20"):
                    if entry[metric] is not None:
                        store.add_result(
                            run_id, name, full.name, f"heldout_{metric.removeprefix('val_')}_acc", entry[metric],
                            split="train_heldout", params={"epoch": entry["epoch"]}, seed=seed, n=n_val,
                        )  # fmt: skip
            cells = []
            if test is not None:
                on_eval = batch_callback(progress, progress.add_task("evaluating", total=None))

                cells = evaluate(clf, test, eval_suite, store=store, run_id=run_id, model_name=name, seed=seed,
                                 batch_size=batch_size, device=dev, callback=on_eval)  # fmt: skip
    console.print(
        f"A3 (reconstructed) on {', '.join(result_layers(clf))}: +{extra} parameters "
        f"({100 * extra / max(base_params, 1):.3f} % of {base_params})"
    )
    if result.best_epoch is not None:
        console.print(f"best held-out PGD-20 {100 * result.best_pgd20:.2f} % at epoch {result.best_epoch}")
    for cell in cells:
        if cell.key.metric in ("accuracy", "robust_accuracy"):
            label = f"{cell.key.perturbation} {cell.key.params}"
            console.print(f"  test {label}: {cell.key.metric} {100 * cell.value:.2f} %")
    best, last = escape(str(out)), escape(str(last_path(out)))
    console.print(f"saved [bold]{best}[/] (best) and [bold]{last}[/] (last) — evaluate with --model file:PATH")


def result_layers(model: object) -> list[str]:
    from robustlab.methods.a3 import get_attachment

    attachment = get_attachment(model)  # type: ignore[arg-type]
    return [] if attachment is None else attachment.layers
