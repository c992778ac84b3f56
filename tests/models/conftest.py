from __future__ import annotations

import json

import pytest
from models_helpers import TINY_CLIP, TINY_CLIP_CONFIG

import robustlab  # noqa: F401  (torchvision import workaround before open_clip / timm)


@pytest.fixture(scope="session")
def tiny_clip_arch(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Register the tiny CLIP config with open_clip and return its architecture name."""
    import open_clip

    path = tmp_path_factory.mktemp("open_clip_configs") / f"{TINY_CLIP}.json"
    path.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(path)
    return TINY_CLIP
