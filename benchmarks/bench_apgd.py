"""robustlab's APGD and APGD-T against torchattacks' (ports of AutoAttack's), in the same run: accuracy and speed.

Both attack the same exact CIFAR-10 test images (`cifar10_exact`, data README) of a published adversarially trained
model with the same eps, steps, loss and one restart. Their random starts differ (torchattacks scales a uniform draw
to the box's surface), so the robust accuracies agree up to sampling; the table shows both, PGD-20 beside them, and
the time per image. A faithful APGD is at least as strong as PGD-20 at the same eps.

    ROBUSTLAB_DATA=../shared/data python benchmarks/bench_apgd.py [--model cifar:resnet4b] [--n 256] [--steps 100]
"""

from __future__ import annotations

import torch
from attack_setup import accuracy, load, parser, radii, timed

from robustlab import rng
from robustlab.attacks import apgd, apgd_t, pgd


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--steps", type=int, default=100)
    args = p.parse_args()
    model, x, y, index = load(args)

    import torchattacks

    print(f"{args.model}, {len(index)} exact CIFAR-10 test images, clean {accuracy(model, x, y):.2f} %, APGD "
          f"{args.steps} steps, 1 restart, torch {torch.__version__}, torchattacks {torchattacks.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'eps':>6} {'loss':<5} {'PGD-20 %':>9} {'robustlab %':>12} {'torchattacks %':>15} "
          f"{'robustlab ms/img':>17} {'torchattacks ms/img':>20}")

    def row(e: float, name: str, pgd_acc: float, ours: tuple, theirs: tuple) -> None:
        print(f"{e:>4g}/255 {name:<5} {pgd_acc:>9.2f} {accuracy(model, ours[0], y):>12.2f} "
              f"{accuracy(model, theirs[0], y):>15.2f} {1e3 * ours[1] / len(index):>17.2f} "
              f"{1e3 * theirs[1] / len(index):>20.2f}")

    for e in radii(args):
        eps = e / 255
        pgd_acc = accuracy(model, pgd(model, x, y, eps=eps, steps=20, generator=rng.sample_generators(0, index, "pgd")),
                           y)  # fmt: skip
        for loss in ("ce", "dlr"):
            ours = timed(apgd, model, x, y, eps=eps, steps=args.steps, loss=loss,
                         generator=rng.sample_generators(0, index, "apgd", loss))  # fmt: skip
            reference = torchattacks.APGD(model, norm="Linf", eps=eps, steps=args.steps, n_restarts=1, loss=loss,
                                          seed=0)  # fmt: skip
            row(e, loss, pgd_acc, ours, timed(reference, x, y))
        # APGD-T: targeted DLR towards the 9 next most likely classes, each on the images still correct
        ours = timed(apgd_t, model, x, y, eps=eps, steps=args.steps, n_targets=9,
                     generator=rng.sample_generators(0, index, "apgd_t"))  # fmt: skip
        reference = torchattacks.APGDT(model, norm="Linf", eps=eps, steps=args.steps, n_restarts=1, n_classes=10,
                                       seed=0)  # fmt: skip
        row(e, "T-9", pgd_acc, ours, timed(reference, x, y))


if __name__ == "__main__":
    main()
