"""CPU smoke test of AR2 against fine-tuning only (equal step budgets) on a small CIFAR-10 subset.

Not a reproduction of the paper's numbers: a few hundred training images, a few dozen optimiser steps, a few
hundred test images. It checks that the pipeline runs end to end on real data and shows the direction of the
effect at this tiny scale.

Usage (from the repository root, ROBUSTLAB_DATA pointing at the shared data):

    python experiments/ar2_cifar10/run.py --out /tmp/ar2_smoke
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from robustlab.data import Subset, load_dataset
from robustlab.engine import evaluate
from robustlab.methods import AR2Config, repair
from robustlab.models import create_model
from robustlab.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cifar:resnet20")
    parser.add_argument("--corruptions", default="gaussian_noise,fog")
    parser.add_argument("--methods", default="ar2,finetune")
    parser.add_argument("--n-train", type=int, default=512)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8, help="optimiser steps per stage")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0, help="seeds the held-out split, shuffling and corruptions")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--unified", action="store_true",
                        help="one repaired model per method for all --corruptions (a corruption drawn per batch), "
                             "evaluated on each of them")  # fmt: skip
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    train = Subset(load_dataset("cifar10", split="train"), range(args.n_train))
    train.name = f"cifar10[:{args.n_train}]"
    test = Subset(load_dataset("cifar10", split="test"), range(args.n_test))
    test.name = f"cifar10_test[:{args.n_test}]"
    exact = load_dataset("cifar10_exact", split="test")
    source = create_model(args.model)
    corruptions = args.corruptions.split(",")
    config = AR2Config(iterations=args.iterations, refine_steps=args.steps, finetune_steps=args.steps,
                       batch_size=args.batch_size, refine_lr=args.lr, finetune_lr=args.lr, seed=args.seed,
                       unified_corruptions=tuple(corruptions))  # fmt: skip
    unified: dict[str, object] = {}  # method -> its one unified RepairResult, repaired on first use
    rows = []
    with Store(args.out / "results.db") as store, store.run("experiments/ar2_cifar10/run.py", vars(args)) as run_id:
        for corruption in corruptions:
            suite = f"clean,{corruption}:severities=1-5"

            def record(
                name: str, model: torch.nn.Module, extra: dict, corruption: str = corruption, suite: str = suite
            ) -> None:
                started = time.monotonic()
                cells = evaluate(model, test, suite, store=store, run_id=run_id, model_name=name, batch_size=100)
                acc = {(c.key.perturbation, c.key.severity): c.value for c in cells if c.key.metric == "accuracy"}
                corrupted = [v for (p, _), v in acc.items() if p == corruption]
                # clean accuracy on the 932 bit-exact test images, and CAM stability (cosine of clean and corrupted
                # CAMs of the true class) at the repair severity
                exact_cells = evaluate(model, exact, "clean", store=store, run_id=run_id, model_name=name,
                                       batch_size=100)  # fmt: skip
                cam_cells = evaluate(model, test, f"cam_stability:corruptions={corruption},severities=3", store=store,
                                     run_id=run_id, model_name=name, batch_size=100)  # fmt: skip
                extra = {**extra, "clean_acc_exact932": exact_cells[0].value,
                         "cam_cosine_s3": next(c.value for c in cam_cells if c.key.metric == "cam_cosine")}  # fmt: skip
                rows.append({"corruption": corruption, "model": name, "clean_acc": acc[("clean", 0)],
                             "corrupted_acc_mean_s1_5": sum(corrupted) / len(corrupted),
                             "corrupted_acc_s3": acc[(corruption, 3)], "eval_seconds": time.monotonic() - started,
                             **extra})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)

            record(f"{args.model} (pretrained)", source, {"method": "none", "steps": 0})
            for method in args.methods.split(","):
                started = time.monotonic()
                if args.unified:
                    if method not in unified:
                        unified[method] = repair(source, train, corruption="unified", config=config, method=method,
                                                 device="cpu")  # fmt: skip
                    result = unified[method]
                else:
                    result = repair(source, train, corruption=corruption, config=config, method=method, device="cpu")
                seconds = time.monotonic() - started
                label = f"{method}[unified]" if args.unified else f"{method}[{corruption}]"
                record(label, result.model, {
                    "method": method, "steps": result.steps, "selected_iteration": result.selected_iteration,
                    "heldout_corrupted_acc": result.val_corrupted_acc, "repair_seconds": seconds,
                    "history": result.history,
                })  # fmt: skip
    meta = {"args": {k: str(v) for k, v in vars(args).items()}, "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}  # fmt: skip
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
