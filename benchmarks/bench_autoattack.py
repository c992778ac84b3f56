"""robustlab's `autoattack` against torchattacks' AutoAttack, in the same run: robust accuracy and time.

Three rows per L-inf eps: FAB-T alone (both without random start, so their iterates may agree exactly); AutoAttack's
standard cascade (APGD-CE, APGD-T, FAB-T, Square 5000) with the original's 100 iterations per gradient attack in
both libraries (torchattacks' attacks chained with `MultiAttack`); and torchattacks' `AutoAttack(version="standard")`
as shipped, which leaves APGD, APGD-T and FAB at their default of 10 iterations. Then FAB-T under L2 at each
``--l2-eps``.

torchattacks' FAB fails on a non-contiguous batch (a `.view` of the input gradient), so the images are one
contiguous batch, for both libraries.

    ROBUSTLAB_DATA=../shared/data python benchmarks/bench_autoattack.py [--model cifar:resnet4b] [--n 256] [--eps 8,2]
"""

from __future__ import annotations

import torch
from attack_setup import accuracy, load, parser, radii, timed

from robustlab import rng
from robustlab.attacks import autoattack, fab_t


def main() -> None:
    p = parser(__doc__, eps="8,2")
    p.add_argument("--l2-eps", default="0.5", help="comma list of L2 radii for the FAB-T L2 rows ('' for none)")
    args = p.parse_args()
    model, x, y, index = load(args)

    import torchattacks

    def cell(result: tuple[torch.Tensor, float]) -> str:
        return f"{accuracy(model, result[0], y):>7.2f} % {result[1]:>7.1f} s"

    print(f"{args.model}, {len(index)} exact CIFAR-10 test images, clean {accuracy(model, x, y):.2f} %, APGD/FAB "
          f"100 steps, 9 target classes, Square 5000 queries, torch {torch.__version__}, torchattacks "
          f"{torchattacks.__version__}, {torch.get_num_threads()} threads")
    print(f"{'eps':>7} {'attack':<11} {'robustlab':>19} {'torchattacks':>19}")
    for e in radii(args):
        eps = e / 255
        fab = torchattacks.FAB(model, norm="Linf", eps=eps, steps=100, n_restarts=1, multi_targeted=True, n_classes=10,
                               seed=0)  # fmt: skip
        print(f"{e:>5g}/255 {'FAB-T':<11} {cell(timed(fab_t, model, x, y, eps=eps)):>19} {cell(timed(fab, x, y)):>19}",
              flush=True)  # fmt: skip
        ours = timed(autoattack, model, x, y, eps=eps, generator=rng.sample_generators(0, index, "autoattack"))
        same = torchattacks.MultiAttack([
            torchattacks.APGD(model, norm="Linf", eps=eps, steps=100, n_restarts=1, loss="ce", seed=0),
            torchattacks.APGDT(model, norm="Linf", eps=eps, steps=100, n_restarts=1, n_classes=10, seed=0),
            torchattacks.FAB(model, norm="Linf", eps=eps, steps=100, n_restarts=1, multi_targeted=True, n_classes=10,
                             seed=0),
            torchattacks.Square(model, norm="Linf", eps=eps, n_queries=5000, n_restarts=1, seed=0),
        ])  # fmt: skip
        print(f"{e:>5g}/255 {'AutoAttack':<11} {cell(ours):>19} {cell(timed(same, x, y)):>19}", flush=True)
        shipped = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=10, seed=0)
        print(f"{e:>5g}/255 {'AA shipped':<11} {'':>19} {cell(timed(shipped, x, y)):>19}", flush=True)
    for eps in (float(v) for v in args.l2_eps.split(",") if v):
        fab = torchattacks.FAB(model, norm="L2", eps=eps, steps=100, n_restarts=1, multi_targeted=True, n_classes=10,
                               seed=0)  # fmt: skip
        ours = timed(fab_t, model, x, y, eps=eps, norm="l2")
        print(f"{eps:>5g} L2 {'FAB-T':<11} {cell(ours):>19} {cell(timed(fab, x, y)):>19}", flush=True)


if __name__ == "__main__":
    main()
