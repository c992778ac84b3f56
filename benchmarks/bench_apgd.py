"""robustlab's APGD and APGD-T against torchattacks' (ports of AutoAttack's), in the same run: accuracy and speed.

Both attack the same exact CIFAR-10 test images (`cifar10_exact`, data README) of a published adversarially trained
model with the same eps, steps, loss and one restart. Their random starts differ (torchattacks scales a uniform draw
to the box's surface), so the robust accuracies agree up to sampling; the table shows both, PGD-20 beside them, and
the time per image. A faithful APGD is at least as strong as PGD-20 at the same eps.

    ROBUSTLAB_DATA=../shared/data python benchmarks/bench_apgd.py [--model cifar:resnet4b] [--n 256] [--steps 100]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

import robustlab  # noqa: F401  (torchvision workaround before torchattacks imports it)
from robustlab import rng
from robustlab.attacks import apgd, apgd_t, pgd
from robustlab.data import load_dataset
from robustlab.models import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cifar:resnet4b")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100)
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
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    print(f"{args.model}, {len(index)} exact CIFAR-10 test images, clean {100 * clean:.2f} %, APGD {args.steps} steps, "
          f"1 restart, torch {torch.__version__}, torchattacks {torchattacks.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'eps':>6} {'loss':<5} {'PGD-20 %':>9} {'robustlab %':>12} {'torchattacks %':>15} "
          f"{'robustlab ms/img':>17} {'torchattacks ms/img':>20}")

    def accuracy(adv: torch.Tensor) -> float:
        with torch.no_grad():
            return 100 * float((model(adv).argmax(1) == y).float().mean())

    for e in (float(v) for v in args.eps.split(",")):
        eps = e / 255
        gens = rng.sample_generators(0, index, "pgd")
        pgd_acc = accuracy(pgd(model, x, y, eps=eps, steps=20, generator=gens))
        for loss in ("ce", "dlr"):
            t0 = time.perf_counter()
            ours = apgd(model, x, y, eps=eps, steps=args.steps, loss=loss,
                        generator=rng.sample_generators(0, index, "apgd", loss))  # fmt: skip
            ours_t = time.perf_counter() - t0
            reference = torchattacks.APGD(model, norm="Linf", eps=eps, steps=args.steps, n_restarts=1, loss=loss,
                                          seed=0)  # fmt: skip
            t0 = time.perf_counter()
            theirs = reference(x, y)
            ref_t = time.perf_counter() - t0
            print(f"{e:>4g}/255 {loss:<5} {pgd_acc:>9.2f} {accuracy(ours):>12.2f} {accuracy(theirs):>15.2f} "
                  f"{1e3 * ours_t / len(index):>17.2f} {1e3 * ref_t / len(index):>20.2f}")
        # APGD-T: targeted DLR towards the 9 next most likely classes, each on the images still correct
        t0 = time.perf_counter()
        ours = apgd_t(model, x, y, eps=eps, steps=args.steps, n_targets=9,
                      generator=rng.sample_generators(0, index, "apgd_t"))  # fmt: skip
        ours_t = time.perf_counter() - t0
        reference = torchattacks.APGDT(model, norm="Linf", eps=eps, steps=args.steps, n_restarts=1, n_classes=10,
                                       seed=0)  # fmt: skip
        t0 = time.perf_counter()
        theirs = reference(x, y)
        ref_t = time.perf_counter() - t0
        print(f"{e:>4g}/255 {'T-9':<5} {pgd_acc:>9.2f} {accuracy(ours):>12.2f} {accuracy(theirs):>15.2f} "
              f"{1e3 * ours_t / len(index):>17.2f} {1e3 * ref_t / len(index):>20.2f}")


if __name__ == "__main__":
    main()
