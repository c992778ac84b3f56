"""Tiny open_clip configurations for the A-TPT tests (a module, not conftest, so tests import it by name)."""

from __future__ import annotations

import json
from pathlib import Path

TEXT = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
ATPT_VIT = "robustlab-test-atpt-vit"
ATPT_RN = "robustlab-test-atpt-rn"
CONFIGS = {
    # 2 blocks, 8 px patches at 32 px: a 4x4 token grid
    ATPT_VIT: {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16,
                                               "patch_size": 8}, "text_cfg": TEXT},
    # ModifiedResNet with one block per stage at 64 px: a 2x2 layer4 grid
    ATPT_RN: {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16,
                                              "head_width": 16}, "text_cfg": TEXT},
}  # fmt: skip


def register_tiny_clips(folder: Path) -> dict[str, str]:
    """Write the configurations to ``folder``, register them with open_clip, return ``{"vit": ..., "resnet": ...}``."""
    import open_clip

    for name, config in CONFIGS.items():
        path = folder / f"{name}.json"
        path.write_text(json.dumps(config))
        open_clip.add_model_config(path)
    return {"vit": ATPT_VIT, "resnet": ATPT_RN}
