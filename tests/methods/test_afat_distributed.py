"""AFAT under torchrun: C's gradient is averaged over the ranks, so both ranks end with the same C and ViT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from robustlab.methods.afat import PatchCorruptor
from robustlab.rng import make_generator

WORKER = Path(__file__).with_name("ddp_afat_worker.py")


@pytest.mark.slow
def test_two_ranks_keep_one_corruption_model(tmp_path: Path, torchrun) -> None:
    pytest.importorskip("timm")
    torchrun(WORKER, tmp_path, timeout=240)

    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    # 16 images, 8 per rank, batch 4: 2 steps per epoch, 2 epochs; C steps once per step on each rank
    assert reports[0] == reports[1] == {"steps": 4, "adversary_steps": 4}
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for part in ("vit", "c"):
        for key, value in states[0][part].items():
            assert torch.equal(value, states[1][part][key]), (part, key)
    # and C did train: it left the initialisation every rank starts from
    initial = PatchCorruptor(16, (4, 4), 3, generator=make_generator(0, "afat_corruptor")).state_dict()
    assert any(not torch.equal(initial[k], states[0]["c"][k]) for k in initial)
