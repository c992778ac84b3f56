"""AFAT under torchrun: C's gradient is averaged over the ranks, so both ranks end with the same C and ViT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustlab.methods.afat import PatchCorruptor
from robustlab.rng import make_generator

WORKER = Path(__file__).with_name("ddp_afat_worker.py")


@pytest.mark.slow
def test_two_ranks_keep_one_corruption_model(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", str(WORKER)]
    proc = subprocess.Popen([*cmd, str(tmp_path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"torchrun did not finish in 240 s:\n{stderr[-5000:]}")
    assert proc.returncode == 0, stdout[-3000:] + stderr[-5000:]

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
