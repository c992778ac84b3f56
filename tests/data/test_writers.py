"""Dataset writers: the uint8 conversion of the corrupted-dataset layouts (the layouts themselves are tested
through ``robustlab corrupt`` in tests/cli/test_corrupt_cli.py)."""

from __future__ import annotations

import numpy as np
import torch

from robustlab.data.writers import to_uint8


def test_uint8_conversion_truncates_but_keeps_whole_levels() -> None:
    levels = torch.arange(256, dtype=torch.float32).div(255).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    assert np.array_equal(to_uint8(levels)[0, ..., 0].ravel(), np.arange(256))  # k / 255 -> k, float32 included
    x = torch.tensor([0.0, 0.5, 0.999, 1.0, 1.2, -0.1]).view(1, 1, 1, 6).expand(1, 3, 1, 6)
    assert to_uint8(x)[0, 0, :, 0].tolist() == [0, 127, 254, 255, 255, 0]  # floor(255 x) after clipping
