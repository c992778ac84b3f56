"""`robustlab attack`: attack a dataset, write the adversarial examples with each sample's outcome, store the cells.

Output folder (refuses to overwrite earlier files unless ``--overwrite``):

* ``adversarial.npz``: ``images`` float32 ``(N, C, H, W)`` in [0, 1] (full precision: an 8-bit file would round a
  2/255 perturbation away), ``indices``, ``labels``, ``clean_pred``, ``adv_pred``, ``success``;
* ``outcome.csv``: one row per sample (index, label, clean prediction, adversarial prediction, success,
  ℓ∞ and ℓ2 size of the perturbation);
* with ``--png``: ``png/<index>_<label>_to_<adv_pred>.png`` (8-bit, for looking at).

The clean and robust accuracy and the attack success rate go to the store under the same keys as the ``eval``
suite entry, so the two commands agree and neither duplicates the other's cells.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

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
    refuse_overwrite,
    std_option,
    user_errors,
    weights_option,
)
from robustlab.cli._progress import ProgressView, format_seconds
from robustlab.data.writers import write_adversarial_examples


def _check_out(out: Path, png: bool, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a folder")
    files = [out / "adversarial.npz", out / "outcome.csv"] + ([out / "png"] if png else [])
    refuse_overwrite(files, overwrite)


@app.command("attack")
def attack_command(
    model: str = typer.Option(..., "--model", help=MODEL_HELP),
    data: str = data_option(),
    attack: str = typer.Option(
        "pgd:eps=8/255,steps=20", "--attack", help="Attack and options, e.g. 'pgd:eps=8/255,steps=20,norm=linf'."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for adversarial.npz, outcome.csv (and png/)."),
    n: int | None = typer.Option(None, "--n", min=1, help="Attack only the first N samples."),
    png: bool = typer.Option(False, "--png", help="Also write every adversarial example as an 8-bit PNG."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace files of an earlier run in --out."),
    db: Path = db_option(),
    split: str = typer.Option("test", "--split"),
    batch_size: int = typer.Option(128, "--batch-size", min=1),
    seed: int = typer.Option(0, "--seed", help="Seed of the per-sample random starts."),
    device: str | None = device_option(),
    data_dir: Path | None = data_dir_option(),
    pretrained: bool = typer.Option(True, "--pretrained/--random-init"),
    weights: Path | None = weights_option(),
    mean: str | None = mean_option(),
    std: str | None = std_option(),
    input_size: str | None = input_size_option(),
    num_classes: int | None = num_classes_option(),
) -> None:
    """Attack a dataset with one attack setting; write adversarial examples and per-sample outcomes."""
    import torch

    from robustlab.engine.evaluate import _key
    from robustlab.engine.measures import attack_conditions, attack_dataset
    from robustlab.engine.suite import check_conditions, parse_suite
    from robustlab.store import Cell, Store

    with user_errors():
        entries = parse_suite(attack)
        if len(entries) != 1:
            raise ValueError(f"--attack takes one attack with its options, got {len(entries)} entries: {attack!r}")
        name, options = entries[0]
        conditions = attack_conditions(name, options)
        if len(conditions) != 1:
            raise ValueError("--attack takes one setting; use robustlab eval --suite for '+' lists of values")
        condition = conditions[0]
        _check_out(out, png, overwrite)
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
        check_conditions([condition], clf, dataset, dev)  # bad settings fail before a run is recorded
        config = {"model": model, "data": data, "dataset": dataset.name, "split": split, "attack": name,
                  "params": dict(condition.params), "n": len(dataset), "seed": seed, "out": str(out)}  # fmt: skip
        with (
            Store(db) as store,
            store.run(command_line(), config, str(dev)) as run_id,
            ProgressView(err_console, f"{name} on {dataset.name}") as view,
        ):
            outcome = attack_dataset(
                clf, dataset, name, condition.params, seed=seed, batch_size=batch_size, device=dev, callback=view,
            )  # fmt: skip
            values = outcome.values()
            keys = [_key(model, dataset, condition, seed, m) for m in condition.metrics]
            store.add(run_id, [Cell(k, v, len(outcome.labels)) for k, v in zip(keys, values, strict=True)])
            clean, _ = dataset.get_batch(outcome.indices.tolist())
            files = write_adversarial_examples(out, outcome, clean.float(), png)
    shown = ", ".join(f"{k}={v}" for k, v in condition.params.items())
    where = escape(f"{model} / {dataset.name}")
    console.print(f"[bold]{name}[/] ({shown}) on {where}, {len(outcome.labels)} images")
    console.print(f"clean accuracy {100 * values[0]:.2f} %  robust accuracy {100 * values[1]:.2f} %  "
                  f"attack success rate {100 * values[2]:.2f} %")  # fmt: skip
    console.print("wrote " + ", ".join(escape(str(f)) for f in files) + f"; cells in [bold]{escape(str(db))}[/]; "
                  f"finished in {format_seconds(view.seconds)}")  # fmt: skip
