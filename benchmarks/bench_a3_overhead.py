"""A3 (reconstructed) overhead: added parameters and throughput vs the plain backbone at batch 128.

Prints, per backbone, the parameters A3 adds and the ratio of images per second with A3 attached (attenuation, the
deployed model) to the plain backbone, for an inference forward and for a training forward + backward. Plain and A3
timings are interleaved and the fastest of each is kept, so the ratios hold on a shared machine; absolute times are
noise.

    nice -n 10 .venv/bin/python benchmarks/bench_a3_overhead.py [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import time
from functools import partial

import torch
import torch.nn.functional as F

from robustlab.methods.a3 import added_parameters, attach
from robustlab.models import create_model


def _best_seconds(fns: list, repeats: int) -> list[float]:
    """Fastest of ``repeats`` timings of each function, calls interleaved so that load spikes hit all alike."""
    for fn in fns:
        fn()  # warm-up
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="cifar:resnet20,cifar:resnet4b,cifar:small_cnn")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.rand(args.batch_size, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.arange(args.batch_size) % 10
    print(f"batch {args.batch_size}, {args.threads} thread(s), best of {args.repeats} interleaved; "
          "ratio = A3 throughput / plain throughput")
    print(f"{'model':<18} {'params':>9} {'+A3':>5} {'+%':>7} {'infer img/s':>12} {'ratio':>6} "
          f"{'train img/s':>12} {'ratio':>6}")  # fmt: skip
    for spec in args.models.split(","):
        plain = create_model(spec, pretrained=False)
        params = sum(q.numel() for q in plain.parameters())
        with_a3 = copy.deepcopy(plain)
        attach(with_a3)
        extra = added_parameters(with_a3)

        def infer(model: torch.nn.Module) -> None:
            with torch.no_grad():
                model(x)

        def train_step(model: torch.nn.Module) -> None:
            model.train()
            F.cross_entropy(model(x), y).backward()
            model.zero_grad(set_to_none=True)
            model.eval()

        plain_inf, a3_inf, plain_train, a3_train = _best_seconds(
            [partial(infer, plain), partial(infer, with_a3), partial(train_step, plain), partial(train_step, with_a3)],
            args.repeats,
        )
        n = args.batch_size
        print(f"{spec:<18} {params:>9} {extra:>5} {100 * extra / params:>6.3f}% {n / a3_inf:>12.0f} "
              f"{plain_inf / a3_inf:>6.3f} {n / a3_train:>12.0f} {plain_train / a3_train:>6.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
