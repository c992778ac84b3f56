"""robustlab's `autoattack` (APGD-CE, APGD-T, Square) against torchattacks running the same three attacks in a
cascade (`MultiAttack`), in the same run: robust accuracy and time. FAB-T, AutoAttack's fourth attack, is in
neither (torchattacks' FAB fails on current torch: a `.view` of a non-contiguous gradient in its targeted run).

    ROBUSTLAB_DATA=../shared/data python benchmarks/bench_autoattack.py [--model cifar:resnet4b] [--n 256] [--eps 8]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

import robustlab  # noqa: F401  (torchvision workaround before torchattacks imports it)
from robustlab import rng
from robustlab.attacks import autoattack
from robustlab.data import load_dataset
from robustlab.models import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cifar:resnet4b")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--eps", default="8", help="comma list of L-inf radii in 1/255 units")
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--data-dir", default=os.environ.get("ROBUSTLAB_DATA"))
    args = parser.parse_args()
    if not args.data_dir:
        raise SystemExit("set ROBUSTLAB_DATA or pass --data-dir (the shared data folder)")

    import torchattacks

    model = create_model(args.model, data_dir=args.data_dir)
    data = load_dataset("cifar10_exact", data_dir=args.data_dir)
    index = list(range(min(args.n, len(data))))
    x, y = data.get_batch(index)

    def accuracy(adv: torch.Tensor) -> float:
        with torch.no_grad():
            return 100 * float((model(adv).argmax(1) == y).float().mean())

    def timed(attack, *args, **kwargs) -> tuple[float, float]:
        t0 = time.perf_counter()
        adv = attack(*args, **kwargs)
        return accuracy(adv), time.perf_counter() - t0

    print(f"{args.model}, {len(index)} exact CIFAR-10 test images, clean {accuracy(x):.2f} %, APGD 100 steps, "
          f"APGD-T 9 targets, Square {args.queries} queries, torch {torch.__version__}, torchattacks "
          f"{torchattacks.__version__}, {torch.get_num_threads()} threads")
    print(f"{'eps':>7} {'robustlab %':>12} {'torchattacks %':>15} {'robustlab s':>12} {'torchattacks s':>15}")
    for e in (float(v) for v in args.eps.split(",")):
        eps = e / 255
        ours = timed(autoattack, model, x, y, eps=eps, queries=args.queries,
                     generator=rng.sample_generators(0, index, "autoattack"))  # fmt: skip
        same = torchattacks.MultiAttack([
            torchattacks.APGD(model, norm="Linf", eps=eps, steps=100, n_restarts=1, loss="ce", seed=0),
            torchattacks.APGDT(model, norm="Linf", eps=eps, steps=100, n_restarts=1, n_classes=10, seed=0),
            torchattacks.Square(model, norm="Linf", eps=eps, n_queries=args.queries, n_restarts=1, p_init=0.8,
                                loss="margin", resc_schedule=True, seed=0),
        ])  # fmt: skip
        theirs = timed(same, x, y)
        print(f"{e:>5g}/255 {ours[0]:>12.2f} {theirs[0]:>15.2f} {ours[1]:>12.1f} {theirs[1]:>15.1f}", flush=True)


if __name__ == "__main__":
    main()
