"""Pictures of explanations for the ``robustlab explain`` command: heat-map overlays and a comparison grid.

matplotlib is imported inside the functions, so importing :mod:`robustlab.explain` stays light.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab._checks import check_images

_COLUMNS = ("image", "perturbed", "clean map", "perturbed map")


def _check_maps(maps: object, images: Tensor, name: str) -> Tensor:
    if not isinstance(maps, Tensor) or maps.ndim != 4 or maps.shape[1] != 1 or not maps.is_floating_point():
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"{name} must be floating maps of shape (N, 1, H, W), got {shape}")
    if maps.shape[0] != images.shape[0]:
        raise ValueError(f"{name} has {maps.shape[0]} maps for {images.shape[0]} images")
    return maps


def overlay(images: Tensor, maps: Tensor, *, alpha: float = 0.5, cmap: str = "jet") -> Tensor:
    """Blend colour-mapped explanation maps over images: ``(1 - alpha) * image + alpha * cmap(map)``.

    Maps are clamped to [0, 1] (pass normalised maps, e.g. a :class:`~robustlab.explain.CAMResult`'s ``maps``)
    and bilinearly resized when their size differs from the images'. The colour map is sampled at 256 levels.

    Args:
        images: pixels in [0, 1], RGB.
        maps: one map per image.
        alpha: weight of the heat map, in [0, 1].
        cmap: a matplotlib colour map name.

    Returns:
        Blended RGB pixels in [0, 1], on the images' device, detached.

    Shape:
        images ``(N, 3, H, W)``, maps ``(N, 1, h, w)`` -> ``(N, 3, H, W)``.

    Raises:
        ValueError: bad images or maps, ``alpha`` outside [0, 1], an unknown colour map.
    """
    import matplotlib

    check_images(images, channels=3)
    maps = _check_maps(maps, images, "maps")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    try:
        colormap = matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(f"unknown matplotlib colour map {cmap!r} (e.g. 'jet', 'viridis', 'inferno')") from None
    images, maps = images.detach(), maps.detach().to(images)
    if maps.shape[-2:] != images.shape[-2:]:
        maps = F.interpolate(maps, size=images.shape[-2:], mode="bilinear", align_corners=False)
    table = torch.as_tensor(colormap(torch.linspace(0, 1, 256).numpy())[:, :3], dtype=images.dtype)
    levels = (maps.clamp(0, 1) * 255).round().long().squeeze(1)  # (N, H, W)
    heat = table.to(images.device)[levels].permute(0, 3, 1, 2)
    return ((1 - alpha) * images + alpha * heat).clamp(0, 1)


def save_explanation_grid(
    path: str | os.PathLike[str],
    clean: Tensor,
    perturbed: Tensor,
    clean_maps: Tensor,
    perturbed_maps: Tensor,
    *,
    titles: Sequence[str] | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    dpi: int = 100,
) -> Path:
    """Write a PNG comparing clean and perturbed explanations, one row per sample.

    Columns: the image, the perturbed image, the clean map over the image, the perturbed map over the perturbed
    image (:func:`overlay`). Each panel is 2 x 2 inches, so the file is ``800 x 200 N`` pixels at ``dpi=100``.

    Args:
        path: the PNG to write; parent folders are created.
        clean: clean pixels in [0, 1].
        perturbed: perturbed pixels, same shape.
        clean_maps: normalised maps of the clean images.
        perturbed_maps: normalised maps of the perturbed images.
        titles: one caption per row (e.g. ``"cat -> dog"``), written above the row; default none.
        alpha: heat-map weight of the overlays.
        cmap: matplotlib colour map of the overlays.
        dpi: resolution of the file.

    Returns:
        The written path.

    Shape:
        images ``(N, 3, H, W)``, maps ``(N, 1, h, w)``.

    Raises:
        ValueError: shapes that disagree, bad images or maps, a title count other than ``N``.
    """
    from matplotlib.figure import Figure

    check_images(clean, name="clean", channels=3)
    check_images(perturbed, name="perturbed", channels=3)
    if clean.shape != perturbed.shape:
        raise ValueError(
            f"clean and perturbed must have the same shape, got {tuple(clean.shape)} and {tuple(perturbed.shape)}"
        )
    n = clean.shape[0]
    if n == 0:
        raise ValueError("save_explanation_grid needs at least one image")
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles needs one caption per row ({n}), got {len(titles)}")
    panels = [
        clean.detach(),
        perturbed.detach(),
        overlay(clean, _check_maps(clean_maps, clean, "clean_maps"), alpha=alpha, cmap=cmap),
        overlay(perturbed, _check_maps(perturbed_maps, perturbed, "perturbed_maps"), alpha=alpha, cmap=cmap),
    ]
    # Figure without pyplot: no global state, no GUI backend, safe in worker threads
    figure = Figure(figsize=(2 * len(panels), 2 * n), dpi=dpi)
    axes = figure.subplots(n, len(panels), squeeze=False)
    for row in range(n):
        for col, panel in enumerate(panels):
            ax = axes[row][col]
            ax.imshow(panel[row].permute(1, 2, 0).float().cpu().numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                # above the row's caption, when there is one
                ax.set_title(_COLUMNS[col], fontsize=9, pad=16 if titles is not None else 4)
            if col == 0 and titles is not None:
                # one horizontal line above the row, free to run across all four panels
                ax.text(0.0, 1.02, titles[row], transform=ax.transAxes, fontsize=8, ha="left", va="bottom")
    top = 1 - (0.45 if titles is not None else 0.3) / (2 * n)
    figure.subplots_adjust(left=0.02, right=0.98, bottom=0.01, top=top, wspace=0.06,
                           hspace=0.2 if titles is not None else 0.08)  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=dpi)
    return path
