"""robustlab's Square Attack against torchattacks' (a port of AutoAttack's), in the same run: robust accuracy, speed.

Both attack the same exact CIFAR-10 test images (`cifar10_exact`, data README) of a published adversarially trained
model with the same eps, query budget, p_init (0.8) and margin loss. Their random draws differ (AutoAttack's port
puts the square at one position for the whole batch, robustlab per image, as the authors' code), so the robust
accuracies agree up to sampling. APGD-CE (100 steps) beside them shows how close the score-based search comes to
the gradient attack on a model without gradient masking.

    ROBUSTLAB_DATA=../shared/data python benchmarks/bench_square.py [--model cifar:resnet4b] [--n 256] [--queries 1000]
"""

from __future__ import annotations

import torch
from attack_setup import accuracy, load, parser, radii, timed

from robustlab import rng
from robustlab.attacks import apgd, square


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--queries", type=int, default=1000)
    args = p.parse_args()
    model, x, y, index = load(args)

    import torchattacks

    print(f"{args.model}, {len(index)} exact CIFAR-10 test images, clean {accuracy(model, x, y):.2f} %, Square "
          f"{args.queries} queries, p_init 0.8, margin loss, torch {torch.__version__}, torchattacks "
          f"{torchattacks.__version__}, {torch.get_num_threads()} threads")
    print(f"{'eps':>7} {'APGD-CE %':>10} {'robustlab %':>12} {'torchattacks %':>15} {'robustlab ms/img':>17} "
          f"{'torchattacks ms/img':>20}")
    for e in radii(args):
        eps = e / 255
        apgd_acc = accuracy(model, apgd(model, x, y, eps=eps, steps=100,
                                        generator=rng.sample_generators(0, index, "apgd")), y)  # fmt: skip
        ours, ours_t = timed(square, model, x, y, eps=eps, queries=args.queries,
                             generator=rng.sample_generators(0, index, "square"))  # fmt: skip
        reference = torchattacks.Square(model, norm="Linf", eps=eps, n_queries=args.queries, n_restarts=1, p_init=0.8,
                                        loss="margin", resc_schedule=True, seed=0)  # fmt: skip
        theirs, ref_t = timed(reference, x, y)
        print(f"{e:>5g}/255 {apgd_acc:>10.2f} {accuracy(model, ours, y):>12.2f} {accuracy(model, theirs, y):>15.2f} "
              f"{1e3 * ours_t / len(index):>17.2f} {1e3 * ref_t / len(index):>20.2f}")


if __name__ == "__main__":
    main()
