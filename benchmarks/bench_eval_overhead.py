"""How much the evaluation loop adds over a bare model forward on the same batches.

Target (issue 2): the loop (batching from the dataset, uint8 -> float, forward, argmax, counting) adds at most 10 %
over `model(images)` on pre-made float batches. Both are timed in the same run, interleaved, best of several repeats.

    python benchmarks/bench_eval_overhead.py [--model cifar:resnet20] [--n 2048] [--batch-size 256] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import robustlab  # noqa: F401
from robustlab.data import ArrayDataset
from robustlab.engine.accuracy import evaluate_accuracy
from robustlab.models import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cifar:resnet20")
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    model = create_model(args.model, pretrained=False, device=args.device)
    c, h, w = model.input_size
    rs = np.random.default_rng(0)
    images = rs.integers(0, 256, size=(args.n, h, w, c), dtype=np.uint8)
    labels = rs.integers(0, model.num_classes, size=args.n)
    dataset = ArrayDataset(images, labels, class_names=model.class_names, name="random")
    batches = [
        dataset.get_batch(range(i, min(i + args.batch_size, args.n)))[0].to(args.device)
        for i in range(0, args.n, args.batch_size)
    ]

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def bare() -> None:
        with torch.inference_mode():
            for x in batches:
                model(x)
        sync()

    def engine() -> None:
        evaluate_accuracy(model, dataset, batch_size=args.batch_size, device=args.device, amp=False)
        sync()

    bare(), engine()  # warm-up
    t_bare, t_engine = [], []
    for _ in range(args.repeats):
        for fn, acc in ((bare, t_bare), (engine, t_engine)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    b, e = min(t_bare), min(t_engine)
    print(
        f"model {args.model}  n={args.n}  batch={args.batch_size}  device={args.device}  "
        f"threads={torch.get_num_threads()}"
    )
    print(f"{'bare forward':>16}: {b * 1e3:8.1f} ms  ({args.n / b:8.0f} img/s)")
    print(f"{'evaluate loop':>16}: {e * 1e3:8.1f} ms  ({args.n / e:8.0f} img/s)")
    print(f"{'overhead':>16}: {100 * (e / b - 1):+.1f} %   (target <= +10 %)")


if __name__ == "__main__":
    main()
