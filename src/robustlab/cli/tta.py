"""`robustlab tta`: test-time prompt tuning of a zero-shot CLIP (A-TPT, TPT, R-TPT, zero-shot), clean and attacked.

Each method's accuracy per condition goes to the store as metric ``<method>_accuracy`` (and the mean fusion-weight
entropy as ``<method>_weight_entropy``) with the condition as perturbation (``clean``, ``pgd``, ``pgd_stale``,
``adaptive``) and the method's non-default options and the attack settings as parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from robustlab.cli._app import app
from robustlab.cli._common import (
    command_line,
    console,
    data_dir_option,
    db_option,
    device_option,
    make_progress,
    progress_callback,
    user_errors,
)

if TYPE_CHECKING:
    import torch

    from robustlab.data import ImageDataset
    from robustlab.models import Classifier


def _parse_fraction(text: str, name: str) -> float:
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            return float(num) / float(den)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{name} must be a number or a fraction such as 4/255, got {text!r}") from None


def load_clip(
    model: str, class_names: list[str], *, weights: Path | None, pretrained: bool, device: str | torch.device | None
) -> Classifier:
    """The zero-shot CLIP classifier, from ``--weights PATH``, open_clip's hub, or random (``--random-init``).

    Raises:
        ValueError: not an ``openclip:`` spec.
        FileNotFoundError: ``--weights`` names no file.
        RuntimeError: no weights could be obtained; the message says to pass ``--weights PATH``.
    """
    from robustlab.models import create_model

    if not model.startswith("openclip:"):
        raise ValueError(f"robustlab tta tunes CLIP prompts: --model must be openclip:<arch>/<tag>, got {model!r}")
    if weights is not None and not weights.is_file():
        raise FileNotFoundError(f"--weights {weights}: no such file (a local open_clip checkpoint is expected)")
    try:
        return create_model(model, pretrained=pretrained, weights=weights, class_names=class_names, device=device)
    except RuntimeError as e:
        raise RuntimeError(
            f"no CLIP weights available for {model}: the open_clip hub could not be reached ({str(e)[:160]}...). "
            "Pass --weights PATH (a local open_clip checkpoint for this architecture), or --random-init for a "
            "pipeline check with random weights"
        ) from None


@app.command("tta")
def tta_command(
    method_arg: str | None = typer.Argument(
        None, metavar="[METHOD]", help="The method, as in `robustlab tta atpt ...`; same as --method."
    ),
    method: str | None = typer.Option(
        None, "--method", help="atpt (default), tpt, rtpt, zeroshot, or a comma list of them."
    ),
    model: str = typer.Option(..., "--model", help="openclip:<arch>/<tag>, e.g. openclip:ViT-B-16/openai."),
    data: str = typer.Option(..., "--data", help="Dataset name (cifar10, digits, ...) or an image-folder path."),
    split_file: Path | None = typer.Option(
        None, "--split-file", help="CoOp/TPT split JSON; --data is then its image root."
    ),
    attack: str = typer.Option("none", "--attack", help="none, or a comma list of pgd, pgd_stale, adaptive."),
    weights: Path | None = typer.Option(None, "--weights", help="Local open_clip checkpoint (offline)."),
    pretrained: bool = typer.Option(True, "--pretrained/--random-init", help="Random weights: pipeline checks."),
    n: int | None = typer.Option(None, "--n", min=1, help="Use only the first N samples."),
    views: int = typer.Option(64, "--views", min=2, help="Views per image, view 0 included."),
    fusion: str | None = typer.Option(None, "--fusion", help="tv, rtpt, uniform or view0 (default: the method's)."),
    mixing: str | None = typer.Option(None, "--mixing", help="attention, full or none (default: the method's)."),
    attention: str = typer.Option(
        "token_gradient", "--attention", help="token_gradient, gradient or token_gradient_all_layers (ablations)."
    ),
    eps: str = typer.Option("4/255", "--eps", help="l-inf radius, e.g. 4/255."),
    steps: int = typer.Option(100, "--steps", min=1, help="PGD steps on the zero-shot logits."),
    adaptive_steps: int = typer.Option(10, "--adaptive-steps", min=1, help="PGD steps through the pipeline."),
    eot: int = typer.Option(4, "--eot", min=1, help="Random view sets per adaptive step."),
    db: Path = db_option(),
    split: str = typer.Option("test", "--split"),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Images held in memory at a time."),
    seed: int = typer.Option(0, "--seed", help="Seeds views, attack starts and EOT draws."),
    device: str | None = device_option(),
    data_dir: Path | None = data_dir_option(),
) -> None:
    """Adapt a CLIP prompt to every test image and record clean / attacked accuracy per method."""
    import torch

    from robustlab.data import fit_to_model, head, load_dataset
    from robustlab.methods.atpt import TestTimeTuner, tta_config
    from robustlab.methods.atpt_attacks import TTA_ATTACKS, TTAAttackConfig, evaluate_tta_dataset
    from robustlab.store import Store

    with user_errors():
        if method_arg is not None and method is not None and method_arg != method:
            raise ValueError(f"the method is given twice: {method_arg!r} and --method {method!r}; give one")
        method = method_arg or method or "atpt"
        methods = [m.strip() for m in method.split(",") if m.strip()]
        configs = [tta_config(m, n_views=views, fusion=fusion, mixing=mixing, attention=attention) for m in methods]
        attacks = () if attack.strip() in ("", "none") else tuple(a.strip() for a in attack.split(","))
        for name in attacks:
            if name not in TTA_ATTACKS:
                raise ValueError(f"--attack: unknown {name!r}; choose none or a comma list of {', '.join(TTA_ATTACKS)}")
        attack_config = TTAAttackConfig(eps=_parse_fraction(eps, "--eps"), steps=steps, adaptive_steps=adaptive_steps,
                                        eot=eot)  # fmt: skip
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if split_file is not None:
            from robustlab.data import load_coop_split

            dataset: ImageDataset = load_coop_split(Path(data), split_file, split)
        else:
            dataset = load_dataset(data, split=split, data_dir=data_dir)
        clf = load_clip(model, list(dataset.class_names), weights=weights, pretrained=pretrained, device=dev)
        dataset = head(fit_to_model(dataset, clf.data_config), n)
        params_attack = {"eps": attack_config.eps, "steps": steps, "step_size": attack_config.pgd_step}
        run_config = {"model": model, "weights": str(weights) if weights else None, "pretrained": pretrained,
                      "data": data, "dataset": dataset.name, "n": len(dataset), "methods": methods,
                      "attacks": list(attacks), "seed": seed, "views": views,
                      "split_file": str(split_file) if split_file else None,
                      "attack_config": {**params_attack, "adaptive_steps": adaptive_steps, "eot": eot}}  # fmt: skip
        summary = []
        with Store(db) as store, store.run(command_line(), run_config, str(dev)) as run_id, make_progress() as progress:
            for cfg in configs:
                tuner = TestTimeTuner(clf, cfg)
                task = progress.add_task(cfg.method, total=None)
                outcome = evaluate_tta_dataset(tuner, dataset, attacks=attacks, attack_config=attack_config,
                                               seed=seed, batch_size=batch_size, device=dev,
                                               callback=progress_callback(progress, task))  # fmt: skip
                for condition, preds in outcome.predictions.items():
                    params = {**cfg.changed(), "n_views": cfg.n_views}
                    if condition != "clean":
                        params.update(params_attack)
                    if condition == "adaptive":
                        params.update(adaptive_steps=adaptive_steps, eot=eot)
                    acc = outcome.accuracy(condition)
                    ent = float(outcome.weight_entropy[condition].mean())
                    for metric, value in ((f"{cfg.method}_accuracy", acc), (f"{cfg.method}_weight_entropy", ent)):
                        store.add_result(run_id, model, dataset.name, metric, value, n=len(preds), split=split,
                                         perturbation=condition, params=params, seed=seed)  # fmt: skip
                    seconds = outcome.seconds[condition] / max(1, len(preds))
                    summary.append((cfg.method, condition, acc, ent, seconds))
    console.print(f"[bold]{escape(model)}[/] on {escape(dataset.name)}, {len(dataset)} images, {views} views")
    for name, condition, acc, ent, seconds in summary:
        console.print(f"{name:9s} {condition:10s} accuracy {100 * acc:6.2f} %  weight entropy {ent:.3f}  "
                      f"{seconds:.3f} s/image")  # fmt: skip
    if not pretrained:
        console.print("[yellow]random weights: these numbers check the pipeline, they are not results[/]")
    console.print(f"cells in [bold]{escape(str(db))}[/]")
