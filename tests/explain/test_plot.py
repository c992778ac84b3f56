from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from explain_helpers import rand_images
from PIL import Image

from robustlab.explain.plot import overlay, save_explanation_grid


def test_overlay_blends_the_colour_map() -> None:
    images = rand_images(2, 8)
    maps = torch.zeros(2, 1, 8, 8)
    maps[:, :, :4] = 1.0
    torch.testing.assert_close(overlay(images, maps, alpha=0.0), images)
    heat = overlay(images, maps, alpha=1.0, cmap="gray")
    torch.testing.assert_close(heat, maps.expand(2, 3, 8, 8))  # gray maps 0 -> black, 1 -> white
    jet = overlay(images, maps, alpha=1.0)  # jet: 0 is dark blue, 1 dark red
    assert jet[0, 2, -1, 0] > 0.4 and jet[0, 0, -1, 0] == 0
    assert jet[0, 0, 0, 0] > 0.4 and jet[0, 2, 0, 0] == 0
    half = overlay(images, maps, alpha=0.5, cmap="gray")
    torch.testing.assert_close(half, (images + maps) / 2)
    small = overlay(images, maps[..., ::2, ::2])  # maps at a lower resolution are upsampled
    assert small.shape == (2, 3, 8, 8) and small.min() >= 0 and small.max() <= 1


def test_overlay_errors() -> None:
    images = rand_images(2, 8)
    with pytest.raises(ValueError, match="alpha"):
        overlay(images, torch.zeros(2, 1, 8, 8), alpha=1.5)
    with pytest.raises(ValueError, match="colour map"):
        overlay(images, torch.zeros(2, 1, 8, 8), cmap="no-such-map")
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        overlay(images, torch.zeros(2, 8, 8))


def test_save_explanation_grid_writes_a_png(tmp_path: Path) -> None:
    clean = rand_images(3, 32)
    perturbed = (clean + 0.2 * rand_images(3, 32, seed=1)).clamp(0, 1)
    maps = rand_images(3, 32, seed=2)[:, :1]
    path = save_explanation_grid(
        tmp_path / "out" / "grid.png", clean, perturbed, maps, maps.flip(-1), titles=["cat", "dog", "ship -> frog"]
    )
    assert path.is_file()
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG" and image.size == (800, 600)  # 4 x 2 in by 3 x 2 in at 100 dpi
    with pytest.raises(ValueError, match="one caption per row"):
        save_explanation_grid(tmp_path / "bad.png", clean, perturbed, maps, maps, titles=["one"])


def test_importing_explain_does_not_import_matplotlib() -> None:
    code = "import sys, robustlab.explain; assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
