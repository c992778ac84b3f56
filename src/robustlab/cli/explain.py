"""`robustlab explain`: a PNG grid of images, their perturbed versions and both explanation maps overlaid."""

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
    input_size_option,
    load_model_and_data,
    mean_option,
    note_data,
    num_classes_option,
    std_option,
    user_errors,
    weights_option,
)


def _default_method(clf: object) -> str:
    """CAM where the head allows it, Grad-CAM for other CNNs, attention rollout for transformers."""
    from robustlab.models import classifier_weights

    if getattr(clf, "family", "cnn") in ("vit", "clip"):
        return "attention_rollout"
    try:
        classifier_weights(clf)  # type: ignore[arg-type]
    except ValueError:
        return "grad_cam"
    return "cam"


def _parse_indices(text: str | None, n: int, size: int) -> list[int]:
    if text is None:
        return list(range(min(n, size)))
    try:
        indices = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--indices must be comma-separated integers, got {text!r}") from None
    bad = [i for i in indices if not 0 <= i < size]
    if bad or not indices:
        raise ValueError(f"--indices must name samples in [0, {size}), got {text!r}")
    return indices


@app.command("explain")
def explain_command(
    model: str = typer.Option(..., "--model", help=MODEL_HELP),
    data: str = data_option(),
    corruption: str | None = typer.Option(
        None, "--corruption", help="Corruption for the perturbed column (default: none, clean maps twice)."
    ),
    severity: int = typer.Option(3, "--severity", min=1, max=5),
    method: str | None = typer.Option(
        None,
        "--method",
        help="cam, grad_cam, attention_rollout, gradient_rollout or token_gradient_rollout (default: cam for "
        "CNNs with a pooled linear head, else grad_cam; attention_rollout for ViTs).",
    ),  # fmt: skip
    n: int = typer.Option(8, "--n", min=1, max=64, help="Number of images (the first N)."),
    indices: str | None = typer.Option(None, "--indices", help="Comma-separated sample indices instead of --n."),
    out: Path = typer.Option(Path("explain.png"), "--out", help="PNG file to write."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    db: Path = db_option("Results store (SQLite): the run is recorded."),
    split: str = typer.Option("test", "--split"),
    seed: int = typer.Option(0, "--seed", help="Seed of the corruption's per-sample generators."),
    profile: str | None = typer.Option(None, "--profile", help="Corruption parameters: imagenet, cifar or tiny."),
    device: str | None = device_option(),
    data_dir: Path | None = data_dir_option(),
    pretrained: bool = typer.Option(True, "--pretrained/--random-init"),
    weights: Path | None = weights_option(),
    mean: str | None = mean_option(),
    std: str | None = std_option(),
    input_size: str | None = input_size_option(),
    num_classes: int | None = num_classes_option(),
) -> None:
    """Write a PNG grid: image, perturbed image, and their explanation maps overlaid (same class for both)."""
    import torch

    from robustlab import rng
    from robustlab.explain import EXPLAINERS, map_cosine
    from robustlab.explain.plot import save_explanation_grid
    from robustlab.perturb import perturb
    from robustlab.store import Store

    with user_errors():
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out} already exists; pass --overwrite or choose another --out")
        if out.suffix.lower() != ".png":
            raise ValueError(f"--out must be a .png file, got {out}")
        if method is not None:
            EXPLAINERS.get(method)  # unknown -> close matches, before any model is loaded
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        clf, dataset = load_model_and_data(model, data, split=split, data_dir=data_dir, pretrained=pretrained,
                                           device=dev, weights=weights, mean=mean, std=std, input_size=input_size,
                                           num_classes=num_classes)  # fmt: skip
        note_data(None, dataset)
        chosen = _parse_indices(indices, n, len(dataset))
        images, labels = dataset.get_batch(chosen)
        images = images.to(dev)
        if corruption is not None:
            gens = rng.sample_generators(seed, chosen, corruption, severity)  # as the eval suite corrupts
            perturbed = perturb(images, corruption, severity, generator=gens, profile=profile)
        else:
            perturbed = images
        method = method or _default_method(clf)
        explainer = EXPLAINERS.get(method)
        with torch.no_grad():
            clean_pred = clf(images).argmax(dim=1)
            pert_pred = clf(perturbed).argmax(dim=1)
        # both maps explain the class predicted on the clean image, so they are comparable
        clean_maps = explainer(clf, images, labels=clean_pred)
        pert_maps = explainer(clf, perturbed, labels=clean_pred)
        cosine = map_cosine(clean_maps, pert_maps)
        names = list(dataset.class_names or [])

        def name(k: int) -> str:
            return names[k] if k < len(names) else str(k)

        titles = [f"#{i} {name(int(y))}: {name(int(a))} → {name(int(b))} (cos {float(c):.2f})"
                  for i, y, a, b, c in zip(chosen, labels, clean_pred, pert_pred, cosine, strict=True)]  # fmt: skip
        config = {"model": model, "data": data, "dataset": dataset.name, "indices": chosen, "method": method,
                  "corruption": corruption, "severity": severity if corruption else None, "seed": seed,
                  "out": str(out)}  # fmt: skip
        with Store(db) as store, store.run(command_line(), config, str(dev)):
            out.parent.mkdir(parents=True, exist_ok=True)
            save_explanation_grid(out, images.cpu(), perturbed.cpu(), clean_maps.detach().cpu(),
                                  pert_maps.detach().cpu(), titles=titles)  # fmt: skip
    what = f"{corruption} s{severity}" if corruption else "clean"
    console.print(f"{method} maps of {len(chosen)} images ({what}); mean cosine clean vs perturbed "
                  f"{float(cosine.mean()):.3f}; wrote [bold]{escape(str(out))}[/]")  # fmt: skip
