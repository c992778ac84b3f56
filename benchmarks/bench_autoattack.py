"""robustlab's `autoattack` against torchattacks' AutoAttack, in the same run: robust accuracy and time.

Three rows per eps: FAB-T alone (both without random start, so their iterates may agree exactly); AutoAttack's
standard cascade (APGD-CE, APGD-T, FAB-T, Square 5000) with the original's 100 iterations per gradient attack in
both libraries (torchattacks' attacks chained with `MultiAttack`); and torchattacks' `AutoAttack(version="standard")`
as shipped, which leaves APGD, APGD-T and FAB at their default of 10 iterations.

torchattacks' FAB fails on a non-contiguous batch (a `.view` of the input gradient), so the images are made
contiguous first, for both libraries.

    ROBUSTLAB_DATA=../shared/data python benchmarks/bench_autoattack.py [--model cifar:resnet4b] [--n 256] [--eps 8,2]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

import robustlab  # noqa: F401  (torchvision workaround before torchattacks imports it)
from robustlab import rng
from robustlab.attacks import autoattack, fab_t
from robustlab.data import load_dataset
from robustlab.models import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cifar:resnet4b")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--eps", default="8,2", help="comma list of L-inf radii in 1/255 units")
    parser.add_argument("--data-dir", default=os.environ.get("ROBUSTLAB_DATA"))
    args = parser.parse_args()
    if not args.data_dir:
        raise SystemExit("set ROBUSTLAB_DATA or pass --data-dir (the shared data folder)")

    import torchattacks

    model = create_model(args.model, data_dir=args.data_dir)
    data = load_dataset("cifar10_exact", data_dir=args.data_dir)
    index = list(range(min(args.n, len(data))))
    x, y = data.get_batch(index)
    x = x.contiguous()

    def timed(attack, *args, **kwargs) -> str:
        t0 = time.perf_counter()
        adv = attack(*args, **kwargs)
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            acc = 100 * float((model(adv).argmax(1) == y).float().mean())
        return f"{acc:>7.2f} % {seconds:>7.1f} s"

    with torch.no_grad():
        clean = 100 * float((model(x).argmax(1) == y).float().mean())
    print(f"{args.model}, {len(index)} exact CIFAR-10 test images, clean {clean:.2f} %, APGD/FAB 100 steps, 9 target "
          f"classes, Square 5000 queries, torch {torch.__version__}, torchattacks {torchattacks.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'eps':>7} {'attack':<11} {'robustlab':>19} {'torchattacks':>19}")
    for e in (float(v) for v in args.eps.split(",")):
        eps = e / 255
        ours = timed(fab_t, model, x, y, eps=eps)
        theirs = timed(torchattacks.FAB(model, norm="Linf", eps=eps, steps=100, n_restarts=1, multi_targeted=True,
                                        n_classes=10, seed=0), x, y)  # fmt: skip
        print(f"{e:>5g}/255 {'FAB-T':<11} {ours:>19} {theirs:>19}", flush=True)
        ours = timed(autoattack, model, x, y, eps=eps, generator=rng.sample_generators(0, index, "autoattack"))
        same = torchattacks.MultiAttack([
            torchattacks.APGD(model, norm="Linf", eps=eps, steps=100, n_restarts=1, loss="ce", seed=0),
            torchattacks.APGDT(model, norm="Linf", eps=eps, steps=100, n_restarts=1, n_classes=10, seed=0),
            torchattacks.FAB(model, norm="Linf", eps=eps, steps=100, n_restarts=1, multi_targeted=True, n_classes=10,
                             seed=0),
            torchattacks.Square(model, norm="Linf", eps=eps, n_queries=5000, n_restarts=1, seed=0),
        ])  # fmt: skip
        print(f"{e:>5g}/255 {'AutoAttack':<11} {ours:>19} {timed(same, x, y):>19}", flush=True)
        shipped = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=10, seed=0)
        print(f"{e:>5g}/255 {'AA shipped':<11} {'':>19} {timed(shipped, x, y):>19}", flush=True)


if __name__ == "__main__":
    main()
