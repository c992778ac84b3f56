"""Throughput of robustlab's PGD against torchattacks' PGD / PGDL2, measured in the same run.

Both attack the same batch of the same model (``cifar:resnet20``, random weights unless ``--pretrained``) with the
same budget and step count. Each round times both, in alternating order, so that load on a shared machine hits
both alike; the table reports median throughputs and the median of the per-round ratios. Target (issue 5):
robustlab >= 1.0x the images/s of torchattacks on CPU and on CUDA. The last column checks that, from the same
random start, the two return the same images (max |difference|).

Both loops are bound by the same model forward/backward; robustlab adds its checks (a two-image double forward,
a range check) and saves a few allocations per step by updating one buffer in place.

    python benchmarks/bench_attacks.py [--n 128] [--steps 10] [--rounds 5] [--devices cpu,cuda] [--threads T]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import robustlab  # noqa: F401  (torchvision workaround before torchattacks imports it)
from robustlab.attacks import pgd
from robustlab.models import create_model


def _start(x: torch.Tensor, eps: float, norm: str, seed: int) -> torch.Tensor:
    """torchattacks' random start drawn from the global generator, to hand to robustlab as ``init``."""
    torch.manual_seed(seed)
    if norm == "linf":
        return torch.empty_like(x).uniform_(-eps, eps)
    delta = torch.empty_like(x).normal_()
    norms = delta.view(x.shape[0], -1).norm(p=2, dim=1).view(-1, 1, 1, 1)
    return delta * (torch.zeros_like(norms).uniform_(0, 1) / norms * eps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128, help="batch size")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--pretrained", action="store_true", help="published weights (needs ROBUSTLAB_DATA)")
    args = parser.parse_args()

    import torchattacks

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"PGD-{args.steps}, cifar:resnet20, batch {args.n}, {args.rounds} alternating rounds, "
          f"torch {torch.__version__}, torchattacks {torchattacks.__version__}, {torch.get_num_threads()} CPU threads")
    header = f"{'device':<7} {'norm':<5} {'robustlab img/s':>16} {'torchattacks img/s':>19}"
    print(f"{header} {'ratio':>7} {'max |diff|':>11}")
    for device in args.devices.split(","):
        if device.startswith("cuda") and not torch.cuda.is_available():
            print(f"{device:<7} (not available)")
            continue
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        torch.manual_seed(0)
        model = create_model("cifar:resnet20", pretrained=args.pretrained, device=device)
        x = torch.rand(args.n, 3, 32, 32, generator=torch.Generator().manual_seed(1)).to(device)
        with torch.no_grad():
            y = model(x).argmax(dim=1)
        for norm, eps in (("linf", 8 / 255), ("l2", 0.5)):
            alpha = 2.5 * eps / args.steps
            reference = (torchattacks.PGD(model, eps=eps, alpha=alpha, steps=args.steps) if norm == "linf"
                         else torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=args.steps))
            ours_t, ref_t = [], []
            diff = 0.0
            for r in range(args.rounds + 1):  # round 0 warms both up and is not timed
                init = _start(x, eps, norm, seed=r)
                timings = {}
                # alternate which goes first, so neither always runs on a warmer (or more loaded) machine
                for name in (("ours", "ref") if r % 2 else ("ref", "ours")):
                    sync()
                    t0 = time.perf_counter()
                    if name == "ours":
                        ours = pgd(model, x, y, eps=eps, steps=args.steps, step_size=alpha, norm=norm, init=init)
                    else:
                        torch.manual_seed(r)
                        theirs = reference(x, y)
                    sync()
                    timings[name] = time.perf_counter() - t0
                if r:
                    ours_t.append(timings["ours"])
                    ref_t.append(timings["ref"])
                diff = max(diff, float((ours - theirs).abs().max()))
            ours_s, ref_s = args.n / statistics.median(ours_t), args.n / statistics.median(ref_t)
            # the ratio is the median of per-round ratios: both halves of a round see the same machine load
            ratio = statistics.median(r / o for o, r in zip(ours_t, ref_t, strict=True))
            print(f"{device:<7} {norm:<5} {ours_s:>16.1f} {ref_s:>19.1f} {ratio:>6.2f}x {diff:>11.2g}")


if __name__ == "__main__":
    main()
