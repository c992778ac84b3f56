"""`robustlab corrupt`: write a corrupted copy of a dataset in the released layouts, or a preview grid.

Both layouts (CIFAR-10-C ``.npy`` and the ImageNet-C JPEG tree), the per-sample seeding and the resume rules are
described in :mod:`robustlab.data.writers`, which writes them; this module parses the options and shows progress.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch
import typer
from rich.markup import escape
from torch import Tensor

from robustlab.cli._app import app
from robustlab.cli._common import console, data_dir_option, device_option, make_progress, user_errors
from robustlab.data.writers import NUM_SEVERITIES, preview_grid, write_corrupted_dataset


# ------------------------------------------------------------------------------------------ parsing
def parse_corruptions(text: str) -> list[str]:
    """``"all"``, ``"test"``, ``"validation"`` or comma-separated names -> registered severity corruptions.

    Raises:
        ValueError: an unknown name (close matches listed), a name that takes no severity (a sequence or the raw
            patch occlusion), or an empty list.
    """
    from robustlab.perturb import ALL_CORRUPTIONS, PERTURBATIONS, TEST_CORRUPTIONS, VALIDATION_CORRUPTIONS

    groups = {"all": ALL_CORRUPTIONS, "test": TEST_CORRUPTIONS, "validation": VALIDATION_CORRUPTIONS}
    names: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        for name in groups.get(part, (part,)):
            fn = PERTURBATIONS.get(name)  # unknown -> ValueError with close matches
            if "severity" not in inspect.signature(fn).parameters:
                raise ValueError(
                    f"{name!r} takes no severity (a perturbation sequence or the raw patch occlusion), so it has no "
                    "corrupted-dataset layout; pass severity corruptions such as gaussian_noise or "
                    "random_patch_occlusion"
                )
            if name not in names:
                names.append(name)
    if not names:
        raise ValueError(f"--corruptions names no corruption: {text!r}; pass e.g. all, test or gaussian_noise,fog")
    return names


def parse_severities(text: str) -> list[int]:
    """``"1-5"``, ``"3"`` or ``"1,3,5"`` -> sorted unique severities in 1..5.

    Raises:
        ValueError: anything else.
    """
    found: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"--severities must look like 1-5, 3 or 1,3,5, got {text!r}") from None
        if not 1 <= first <= last <= NUM_SEVERITIES:
            raise ValueError(f"--severities must lie in 1..{NUM_SEVERITIES} (low-high), got {part!r}")
        found.update(range(first, last + 1))
    if not found:
        raise ValueError(f"--severities names no severity: {text!r}")
    return sorted(found)


# ------------------------------------------------------------------------------------------ preview
def _load_preview_image(path: Path, size: int) -> Tensor:
    from PIL import Image

    if not path.is_file():
        raise FileNotFoundError(f"--preview {path}: no such image file")
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"--preview {path}: not a decodable image ({err})") from None
    scale = size / min(rgb.size)
    resized = rgb.resize(
        (max(size, round(rgb.width * scale)), max(size, round(rgb.height * scale))), Image.Resampling.BILINEAR
    )
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    crop = resized.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(crop).copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


# ------------------------------------------------------------------------------------------ command
@app.command("corrupt")
def corrupt_command(
    data: str | None = typer.Option(None, "--data", help="Dataset name or path to corrupt (its test split)."),
    out: Path = typer.Option(..., "--out", help="Output folder (or the PNG to write with --preview)."),
    corruptions: str = typer.Option(
        "all", "--corruptions", help="Comma-separated corruption names, or all / test / validation."
    ),
    severities: str = typer.Option("1-5", "--severities", help="Severities, e.g. 1-5, 3 or 1,3,5."),
    fmt: str | None = typer.Option(
        None, "--format", help="cifar (CIFAR-10-C .npy) or imagenet (ImageNet-C JPEG tree); default from image size."
    ),
    n: int | None = typer.Option(None, "--n", min=1, help="Corrupt only the first N images."),
    seed: int = typer.Option(0, "--seed", help="Seed of the per-sample generators."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    device: str | None = device_option(),
    data_dir: Path | None = data_dir_option(),
    profile: str | None = typer.Option(
        None, "--profile", help="Severity parameters: imagenet, cifar or tiny (default: from the image size)."
    ),
    size: int = typer.Option(
        224, "--size", min=8, help="ImageNet layout / preview image size (resize shorter side, centre crop)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Rewrite existing complete files."),
    preview: Path | None = typer.Option(
        None, "--preview", help="Instead of a dataset: write a PNG grid of IMAGE under every corruption × severity."
    ),
) -> None:
    """Write a corrupted dataset (CIFAR-10-C .npy or ImageNet-C JPEG tree), or a preview grid of one image."""
    with user_errors():
        names = parse_corruptions(corruptions)
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if preview is not None:
            if data is not None:
                raise ValueError("pass either --data (write a dataset) or --preview IMAGE (write a grid), not both")
            if out.suffix.lower() != ".png":
                raise ValueError(f"--preview writes a PNG; --out must end in .png, got {out}")
            image = _load_preview_image(preview, size)
            preview_grid(image, names, out, seed=seed, profile=profile, device=dev)
            console.print(f"wrote [bold]{escape(str(out))}[/] ({len(names)} corruptions × clean + 5 severities)")
            return
        if data is None:
            raise ValueError("pass --data NAME|PATH (the dataset to corrupt) or --preview IMAGE")
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} exists and is not a folder")
        from robustlab.data import load_dataset

        levels = parse_severities(severities)
        dataset = load_dataset(data, split="test", data_dir=data_dir)
        with make_progress() as progress:
            task = progress.add_task("corrupting", total=None)

            def callback(event: dict[str, Any]) -> None:
                progress.update(
                    task, description=event["description"], completed=event["completed"], total=event["total"]
                )

            written = write_corrupted_dataset(
                dataset,
                out,
                names,
                levels,
                fmt=fmt,
                n=n,
                seed=seed,
                batch_size=batch_size,
                device=dev,
                profile=profile,
                size=size,
                overwrite=overwrite,
                callback=callback,
            )
    skipped = [c for c in names if c not in written]
    note = f"; {len(skipped)} already complete, skipped (--overwrite rewrites)" if skipped else ""
    console.print(f"wrote {len(written)} corruption(s) to [bold]{escape(str(out))}[/]{note}")
    console.print(f"read back with load_dataset({str(out)!r}, corruption={names[0]!r}, severity={levels[0]})")
