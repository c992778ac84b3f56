"""robustlab's Square Attack against torchattacks' (a port of AutoAttack's), in the same run: robust accuracy, speed.

Both attack the same exact CIFAR-10 test images (`cifar10_exact`, data README) of a published adversarially trained
model with the same eps, query budget, p_init (0.8) and margin loss. Their random draws differ (AutoAttack's port
puts the square at one position for the whole batch, robustlab per image, as the authors' code), so the robust
accuracies agree up to sampling. APGD-CE (100 steps) beside them shows how close the score-based search comes to
the gradient attack on a model without gradient masking.

    ROBUSTLAB_DATA=../shared/data python benchmarks/bench_square.py [--model cifar:resnet4b] [--n 256] [--queries 1000]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

import robustlab  # noqa: F401  (torchvision workaround before torchattacks imports it)
from robustlab import rng
from robustlab.attacks import apgd, square
from robustlab.data import load_dataset
from robustlab.models import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cifar:resnet4b")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--eps", default="2,8", help="comma list of L-inf radii in 1/255 units")
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

    print(f"{args.model}, {len(index)} exact CIFAR-10 test images, clean {accuracy(x):.2f} %, Square {args.queries} "
          f"queries, p_init 0.8, margin loss, torch {torch.__version__}, torchattacks {torchattacks.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'eps':>7} {'APGD-CE %':>10} {'robustlab %':>12} {'torchattacks %':>15} {'robustlab ms/img':>17} "
          f"{'torchattacks ms/img':>20}")
    for e in (float(v) for v in args.eps.split(",")):
        eps = e / 255
        apgd_acc = accuracy(apgd(model, x, y, eps=eps, steps=100, generator=rng.sample_generators(0, index, "apgd")))
        t0 = time.perf_counter()
        ours = square(model, x, y, eps=eps, queries=args.queries, generator=rng.sample_generators(0, index, "square"))
        ours_t = time.perf_counter() - t0
        reference = torchattacks.Square(model, norm="Linf", eps=eps, n_queries=args.queries, n_restarts=1, p_init=0.8,
                                        loss="margin", resc_schedule=True, seed=0)  # fmt: skip
        t0 = time.perf_counter()
        theirs = reference(x, y)
        ref_t = time.perf_counter() - t0
        print(f"{e:>5g}/255 {apgd_acc:>10.2f} {accuracy(ours):>12.2f} {accuracy(theirs):>15.2f} "
              f"{1e3 * ours_t / len(index):>17.2f} {1e3 * ref_t / len(index):>20.2f}")


if __name__ == "__main__":
    main()
