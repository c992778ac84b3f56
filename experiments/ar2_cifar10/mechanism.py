"""Mechanism check and learning-rate sweep for AR2 before the long run (issue 18), on held-out training images only.

1. Gradient norms at the pretrained model, over a few training batches: the backbone gradient of each loss term
   (L_CAM clean, L_CAM corrupted, CE clean, CE corrupted; the CE terms from one mixed batch in train mode).
2. A sweep of short single-stage-type repairs (``method="refine"`` over ``--refine-lrs``, ``"finetune"`` over
   ``--finetune-lrs``), one outer iteration each: held-out L_CAM before and after every refinement stage, relative
   weight change, loss first -> last, held-out corrupted / clean accuracy. Selection uses only the 10 % held-out
   part of the training subset (``AR2Config.val_fraction``); no test image is read.

Usage (repository root, ROBUSTLAB_DATA set):

    python experiments/ar2_cifar10/mechanism.py --out /tmp/ar2_mechanism.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from robustlab.data import load_dataset
from robustlab.methods import AR2Config, repair
from robustlab.methods.ar2 import _split, make_reference
from robustlab.methods.ar2_losses import refinement_terms
from robustlab.models import create_model
from robustlab.perturb import perturb
from robustlab.rng import make_generator


def gradient_norms(model, reference, train, corruption: str, batches: int, batch_size: int) -> dict[str, float]:
    """Mean over ``batches`` of the backbone gradient norm of each loss term at the current weights."""
    backbone = [p for name, p in model.named_parameters() if not name.startswith("net.fc.")]
    sums = {"cam_clean": 0.0, "cam_corrupted": 0.0, "ce_clean": 0.0, "ce_corrupted": 0.0}
    weights = copy.deepcopy(model.state_dict())
    for b in range(batches):
        model.load_state_dict(weights)  # the train-mode CE forward below moves BN statistics: undo it per batch
        images, labels = train.get_batch(list(range(b * batch_size, (b + 1) * batch_size)))
        corrupted = perturb(images, corruption, 3, generator=make_generator(0, "mechanism", corruption, b))
        model.train()
        clean_mse, noisy_mse, _ = refinement_terms(model, reference, images, corrupted, labels)
        clean_logits, noisy_logits = model(torch.cat([images, corrupted])).split(len(images))
        terms = {"cam_clean": clean_mse, "cam_corrupted": noisy_mse, "ce_clean": F.cross_entropy(clean_logits, labels),
                 "ce_corrupted": F.cross_entropy(noisy_logits, labels)}  # fmt: skip
        for name, loss in terms.items():
            if not loss.requires_grad:  # exactly zero with no graph (never here: alpha = 0.5)
                continue
            grads = torch.autograd.grad(loss, backbone, retain_graph=True, allow_unused=True)
            sums[name] += float(torch.sqrt(sum(g.pow(2).sum() for g in grads if g is not None))) / batches
    model.eval()
    return sums


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cifar:resnet20")
    parser.add_argument("--corruptions", default="gaussian_noise,fog")
    parser.add_argument("--refine-lrs", default="0.03,0.3,3")
    parser.add_argument("--finetune-lrs", default="0.0003,0.001,0.003,0.01")
    parser.add_argument("--steps", type=int, default=15, help="optimiser steps per stage (two stages)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--grad-batches", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # the sweep's tiny rates are meant to be negligible; the table shows it
    data = load_dataset("cifar10_exact", split="train")
    source = create_model(args.model)
    train, _ = _split(data, 0.1, 0)
    report: dict = {"args": vars(args) | {"out": str(args.out)}, "gradients": {}, "sweep": []}
    for corruption in args.corruptions.split(","):
        grads = gradient_norms(copy.deepcopy(source), make_reference(source), train, corruption, args.grad_batches,
                               args.batch_size)  # fmt: skip
        report["gradients"][corruption] = grads
        print(corruption, "backbone gradient norms", json.dumps({k: round(v, 4) for k, v in grads.items()}), flush=True)
        runs = [("refine", float(lr)) for lr in args.refine_lrs.split(",") if lr]
        runs += [("finetune", float(lr)) for lr in args.finetune_lrs.split(",") if lr]
        for method, lr in runs:
            config = AR2Config(iterations=1, refine_steps=args.steps, finetune_steps=args.steps, seed=0,
                               batch_size=args.batch_size, refine_lr=lr, finetune_lr=lr, select_best=False)  # fmt: skip
            started = time.monotonic()
            result = repair(source, data, corruption=corruption, method=method, config=config, device="cpu")
            before, after = result.history[0], result.history[-1]
            stages = [h for h in result.history if h["stage"] != "select"]
            row = {"corruption": corruption, "method": method, "lr": lr, "seconds": time.monotonic() - started,
                   "val_cam_before": before["val_cam_loss"],
                   "val_cam_after_stages": [h.get("val_cam_loss") for h in stages],
                   "val_cam_after": after["val_cam_loss"], "weight_change": [h["weight_change"] for h in stages],
                   "loss_first_last": [(h["loss_first"], h["loss_last"]) for h in stages],
                   "val_corrupted_acc": [before["val_corrupted_acc"], after["val_corrupted_acc"]],
                   "val_clean_acc": [before["val_clean_acc"], after["val_clean_acc"]]}  # fmt: skip
            report["sweep"].append(row)
            print(json.dumps(row), flush=True)
            args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
