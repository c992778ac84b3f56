"""A3 (reconstructed) on CIFAR-10: PGD-AT vs PGD-AT + A3 under the same recipe and budget, plus ablations.

Fine-tunes the adversarially trained (eps = 2/255) ``cifar:resnet4b`` at eps = 8/255 on a CIFAR-10 subset, once per
variant, with the identical schedule, data order, attack and seeds; then evaluates each on the first N test images.

    ROBUSTLAB_DATA=../shared/data nice -n 10 .venv/bin/python experiments/a3_cifar10/run.py

Writes ``results.json`` and the two curves (``robust_vs_eps.png``, ``robust_vs_iterations.png``) next to this file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from robustlab.attacks import apgd, autoattack, fgsm, pgd, square
from robustlab.data import Subset, load_dataset
from robustlab.methods.a3 import (
    A3Config,
    A3LossConfig,
    a3_mode,
    added_parameters,
    attach,
    get_attachment,
    train_a3,
)
from robustlab.models import create_model
from robustlab.rng import make_generator
from robustlab.train import random_crop_flip

HERE = Path(__file__).parent
EPS = 8 / 255
STEP = 2 / 255
NO_A3_TERMS = {"contrastive_weight": 0.0, "ranking_weight": 0.0, "degradation_weight": 0.0}
# variant -> (attach A3?, module settings, loss settings)
VARIANTS: dict[str, tuple[bool, dict, dict]] = {
    "pgd_at": (False, {}, NO_A3_TERMS),
    "pgd_at+a3": (True, {}, {}),
    "attenuation_only": (True, {}, NO_A3_TERMS),
    "no_contrastive": (True, {}, {"contrastive_weight": 0.0}),
    "no_ranking": (True, {}, {"ranking_weight": 0.0}),
    "no_degradation": (True, {}, {"degradation_weight": 0.0}),
    "fixed_random_mask": (True, {"fixed_mask": True}, {}),
    "no_magnitude_factor": (True, {"use_factor": False}, {}),
    "trades": (False, {}, {**NO_A3_TERMS, "at": "trades"}),
    "trades+a3": (True, {}, {"at": "trades"}),
}
MAIN = ("pgd_at", "pgd_at+a3")
CURVE_EPS = (2, 4, 8, 12, 16)
CURVE_STEPS = (10, 20, 50, 100, 200)
MASKING_EPS = (32, 64)


def batches(images: torch.Tensor, labels: torch.Tensor, size: int):
    for start in range(0, len(labels), size):
        yield start // size, images[start : start + size], labels[start : start + size]


@torch.no_grad()
def correct(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return model(images).argmax(dim=1) == labels


def attack_correct(model, images, labels, attack, size: int, seed: int, name: str) -> torch.Tensor:
    """Per-image correctness under ``attack(model, x, y, generator)``, in batches."""
    out = []
    for b, x, y in batches(images, labels, size):
        adv = attack(model, x, y, make_generator(seed, name, b))
        out.append(correct(model, adv, y))
    return torch.cat(out)


def pgd_attack(eps: float, steps: int, loss: str = "ce", step_size: float | None = None):
    step_size = STEP if step_size is None else step_size
    return lambda m, x, y, g: pgd(m, x, y, eps=eps, steps=steps, step_size=step_size, loss=loss, generator=g)


def iteration_curve(model, images, labels, size: int, seed: int) -> dict[int, float]:
    """Robust accuracy of the last PGD iterate after 10..200 steps: one chained run per batch.

    Continuing a k-step run from its iterate (``init``, no new random start) gives exactly the iterates of a
    longer run with the same start, so the 200-step run yields every point of the curve.
    """
    hits = {k: 0 for k in CURVE_STEPS}
    for b, x, y in batches(images, labels, size):
        adv, done = x, 0
        for k in CURVE_STEPS:
            if done == 0:
                adv = pgd(model, x, y, eps=EPS, steps=k, step_size=STEP, generator=make_generator(seed, "iter", b))
            else:
                adv = pgd(model, x, y, eps=EPS, steps=k - done, step_size=STEP, random_start=False, init=adv - x)
            done = k
            hits[k] += int(correct(model, adv, y).sum())
    return {k: v / len(labels) for k, v in hits.items()}


def evaluate_variant(
    model, images, labels, *, full: bool, size: int, seed: int, transfer=None, with_apgd: bool = False,
    square_queries: int = 0, with_autoattack: bool = False,
) -> dict:
    t0 = time.process_time()
    res: dict = {}
    clean = torch.cat([correct(model, x, y) for _, x, y in batches(images, labels, size)])
    per = {
        "fgsm": attack_correct(model, images, labels, lambda m, x, y, g: fgsm(m, x, y, eps=EPS), size, seed, "fgsm"),
        "pgd20": attack_correct(model, images, labels, pgd_attack(EPS, 20), size, seed, "pgd20"),
        "cw30": attack_correct(model, images, labels, pgd_attack(EPS, 30, "cw"), size, seed, "cw30"),
    }
    if full:
        per["pgd100"] = attack_correct(model, images, labels, pgd_attack(EPS, 100), size, seed, "pgd100")
    if square_queries:  # AutoAttack's score-based attack (margin loss, p_init 0.8): no gradients involved
        per["square"] = attack_correct(
            model, images, labels, lambda m, x, y, g: square(m, x, y, eps=EPS, queries=square_queries, generator=g),
            size, seed, "square",
        )  # fmt: skip
    if with_autoattack:  # AutoAttack's standard cascade: APGD-CE, APGD-T, FAB-T, Square-5000
        per["autoattack"] = attack_correct(
            model, images, labels, lambda m, x, y, g: autoattack(m, x, y, eps=EPS, generator=g), size, seed,
            "autoattack",
        )  # fmt: skip
    if with_apgd:  # AutoAttack's two white-box APGD runs (100 steps, one restart)
        for loss in ("ce", "dlr"):
            per[f"apgd_{loss}"] = attack_correct(
                model, images, labels, lambda m, x, y, g, loss=loss: apgd(m, x, y, eps=EPS, steps=100, loss=loss,
                                                                          generator=g),
                size, seed, f"apgd_{loss}",
            )  # fmt: skip
    res["clean"] = float(clean.float().mean())
    for name, hits in per.items():
        res[name] = float(hits.float().mean())
    worst = clean.clone()
    for hits in per.values():
        worst &= hits
    res["worst_case"] = float(worst.float().mean())
    if full:
        res["vs_eps"] = {
            e: float(attack_correct(model, images, labels, pgd_attack(e / 255, 20, step_size=e / 255 / 4), size,
                                    seed, f"eps{e}").float().mean())
            for e in CURVE_EPS + MASKING_EPS
        }  # fmt: skip
        res["vs_steps"] = iteration_curve(model, images, labels, size, seed)
        if transfer is not None:
            res["transfer_from_baseline_pgd20"] = float(
                torch.cat([correct(model, adv, y) for adv, (_, _, y) in zip(
                    transfer, batches(images, labels, size), strict=True)]).float().mean()
            )  # fmt: skip
        if get_attachment(model) is not None:
            # attack the model with A3 switched off, evaluate the deployed (attenuated) one: a surrogate that
            # removes whatever A3 does to gradients
            hits = []
            for b, x, y in batches(images, labels, size):
                with a3_mode(model, "off"):
                    adv = pgd(model, x, y, eps=EPS, steps=20, step_size=STEP, generator=make_generator(seed, "off", b))
                hits.append(correct(model, adv, y))
            res["transfer_from_a3_off_pgd20"] = float(torch.cat(hits).float().mean())
            with a3_mode(model, "off"):
                res["a3_off_clean"] = float(torch.cat([correct(model, x, y) for _, x, y in
                                                       batches(images, labels, size)]).float().mean())  # fmt: skip
            masks = [blk.mask(1) for blk in get_attachment(model).modules_in_order()]
            res["mask_on_fraction"] = [float(m.mean()) for m in masks]
    res["eval_cpu_s"] = time.process_time() - t0
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="cifar:resnet4b")
    p.add_argument("--n-train", type=int, default=2560)
    p.add_argument("--n-val", type=int, default=128, help="held-out train images for per-epoch PGD-20 (best ckpt)")
    p.add_argument("--n-eval", type=int, default=500)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--milestones", default="0.67")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-curves", action="store_true", help="main variants too: clean, FGSM, PGD-20, C&W only")
    p.add_argument("--apgd", action="store_true", help="add APGD-CE and APGD-DLR (100 steps) to the worst case")
    p.add_argument("--autoattack", action="store_true", help="add AutoAttack's standard cascade to the worst case")
    p.add_argument("--square", type=int, default=0, metavar="QUERIES",
                   help="add Square Attack with this many queries (AutoAttack: 5000) to the worst case")
    p.add_argument("--out", type=Path, default=HERE / "results.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data_dir = os.environ.get("ROBUSTLAB_DATA")
    train_full = load_dataset("cifar10", split="train", data_dir=data_dir)
    train = Subset(train_full, range(args.n_train))
    held = Subset(train_full, range(len(train_full) - args.n_val, len(train_full)))
    test = load_dataset("cifar10", split="test", data_dir=data_dir)
    images, labels = test.get_batch(list(range(args.n_eval)))
    milestones = tuple(float(v) for v in args.milestones.split(",") if v)

    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results.setdefault("variants", {})
    results["setup"] = {
        "model": args.model, "n_train": args.n_train, "n_val": args.n_val, "n_eval": args.n_eval,
        "epochs": args.epochs, "lr": args.lr, "milestones": milestones, "batch_size": args.batch_size,
        "train_attack": "PGD-10, eps 8/255, step 2/255, random start", "threads": args.threads, "seed": args.seed,
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
    }  # fmt: skip
    baseline_adv = None
    for name in args.variants.split(","):
        use_a3, module_kw, loss_kw = VARIANTS[name]
        model = create_model(args.model, pretrained=True, data_dir=data_dir)
        params = sum(p.numel() for p in model.parameters())
        if use_a3:
            attach(model, config=A3Config(**module_kw), seed=args.seed)
        t0 = time.process_time()
        result = train_a3(model, train, val_data=held, epochs=args.epochs, lr=args.lr, milestones=milestones,
                          batch_size=args.batch_size, loss_config=A3LossConfig(**loss_kw), augment=random_crop_flip,
                          seed=args.seed)  # fmt: skip
        train_cpu = time.process_time() - t0
        model.load_state_dict(result.best_state)  # the best held-out PGD-20 epoch, as the recipe keeps
        model.eval()
        full = name in MAIN and not args.no_curves
        res = evaluate_variant(model, images, labels, full=full, size=250, seed=args.seed,
                               transfer=baseline_adv if name == "pgd_at+a3" else None,
                               with_apgd=args.apgd, square_queries=args.square,
                               with_autoattack=args.autoattack)  # fmt: skip
        if name == "pgd_at":
            baseline_adv = [pgd(model, x, y, eps=EPS, steps=20, step_size=STEP, generator=make_generator(7, "t", b))
                            for b, x, y in batches(images, labels, 250)]  # fmt: skip
        res.update({
            "backbone_parameters": params, "added_parameters": added_parameters(model), "train_cpu_s": train_cpu,
            "best_epoch": result.best_epoch, "history": result.history,
        })  # fmt: skip
        results["variants"][name] = res
        args.out.write_text(json.dumps(results, indent=1, default=float))
        print(name, {k: v for k, v in res.items() if k not in ("history",)}, flush=True)


if __name__ == "__main__":
    main()
