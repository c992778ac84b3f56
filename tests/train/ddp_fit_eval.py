"""Worker for the two-process test: ``torchrun --nproc_per_node=2 --standalone ddp_fit_eval.py OUT_DIR``.

Trains a tiny CNN with DDP on gloo, then evaluates it on 101 samples (not divisible by 2). Each rank
writes the indices it evaluated, the reduced (correct, count), its history and its parameters to
``OUT_DIR``. The test imports :func:`make_data` and :func:`make_model` from here to check the numbers
in-process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

import robustlab  # noqa: F401  (first, before anything imports torchvision)
from robustlab.data._base import ArrayDataset
from robustlab.engine import evaluate, evaluate_accuracy, predict
from robustlab.models.classifier import Classifier
from robustlab.store import Store
from robustlab.train import fit
from robustlab.train.distributed import destroy_distributed, init_distributed, rank, world_size

SIZE = 16
SUITE = "clean,noise:sigmas=0.3,occlusion:ratios=0.5,patch=4"


def make_data(n: int, seed: int, *, wrong_every: int = 0) -> ArrayDataset:
    """Two colour classes: a brighter red channel (0) or a brighter blue channel (1), plus noise.

    With ``wrong_every=k`` every k-th label is flipped, so a perfect model scores below 100 %.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = 0.3 + 0.3 * torch.rand((n, 3, SIZE, SIZE), generator=g)
    images[labels == 0, 0] += 0.3
    images[labels == 1, 2] += 0.3
    if wrong_every:
        labels[::wrong_every] = 1 - labels[::wrong_every]
    return ArrayDataset(images.clamp(0, 1), labels, class_names=["red", "blue"], name="colours")


def make_model(seed: int = 0) -> Classifier:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # test code: a fixed initialisation without touching the caller's RNG
        net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 2),
        )
    model = Classifier(net, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(3, SIZE, SIZE), class_names=["r", "b"])
    return model.eval()


def main(out: Path) -> None:
    torch.set_num_threads(1)
    device = init_distributed("cpu")  # joined here, so fit leaves the group up for the evaluation below
    model = make_model()
    test = make_data(101, seed=2, wrong_every=7)
    result = fit(
        model, make_data(60, seed=1), val_data=test, epochs=2, lr=0.05, batch_size=8, device=device,
        checkpoint=out / "ckpt.pt", seed=3,
    )  # fmt: skip
    indices, _ = predict(model, test, batch_size=16)
    correct, count = evaluate_accuracy(model, test, batch_size=16)
    me = rank()
    # the full engine under torchrun: sharded, reduced, and only rank 0 writes to its store
    if me == 0:
        with Store(out / "ddp.db") as store, store.run("ddp eval", {}) as run_id:
            cells = evaluate(model, test, SUITE, store=store, run_id=run_id, batch_size=16, seed=5)
    else:
        cells = evaluate(model, test, SUITE, batch_size=16, seed=5)
    torch.save(model.state_dict(), out / f"params_rank{me}.pt")
    history = [{k: v for k, v in h.items() if k != "seconds"} for h in result.history]
    report = {
        "rank": me, "world_size": world_size(), "indices": indices.tolist(),
        "correct": correct, "count": count,
        "history": history, "steps": result.steps, "training": model.training,
        "cells": [[c.key.perturbation, c.key.params_json, c.value, c.n] for c in cells],
    }  # fmt: skip
    (out / f"rank{me}.json").write_text(json.dumps(report))
    destroy_distributed()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
