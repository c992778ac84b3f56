from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import robustlab  # noqa: F401  (applies the torchvision import workaround first)

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared data folder (``ROBUSTLAB_DATA``); tests marked ``realdata`` skip without it."""
    root = os.environ.get("ROBUSTLAB_DATA")
    if not root:
        pytest.skip("ROBUSTLAB_DATA is not set")
    # absolute, so tests that change directory (the README runs with ROBUSTLAB_DATA=../shared/data) still find it
    path = Path(root).resolve()
    if not path.is_dir():
        pytest.skip(f"ROBUSTLAB_DATA={root} is not a directory")
    return path
