"""What the evaluation engine adds over its parts: on-the-fly corruption + bare forward, timed separately.

Target (issue 4): ``evaluate()`` with on-the-fly corruption (per-sample generators, store bookkeeping, counting) takes
at most 10 % longer than corrupting the same batches and running the bare model forward on them, timed separately in
the same run. Default: ResNet-50 (timm, random weights) at 224 px, batch 32.

    python benchmarks/bench_engine_overhead.py [--model timm:resnet50] [--n 64] [--corruption fog]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import robustlab  # noqa: F401
from robustlab import rng
from robustlab.data import ArrayDataset
from robustlab.engine import build_suite, evaluate
from robustlab.models import create_model
from robustlab.perturb import perturb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="timm:resnet50")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--corruption", default="fog")
    parser.add_argument("--severity", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    model = create_model(args.model, pretrained=False, device=args.device)
    c, h, w = model.input_size
    rs = np.random.default_rng(0)
    data = ArrayDataset(
        rs.integers(0, 256, size=(args.n, h, w, c), dtype=np.uint8),
        rs.integers(0, model.num_classes, size=args.n),
        class_names=model.class_names,
        name="random",
    )
    suite = build_suite(f"{args.corruption}:severities={args.severity}")
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def parts() -> float:
        corrupt_s = forward_s = 0.0
        for i in range(0, args.n, args.batch_size):
            idx = list(range(i, min(i + args.batch_size, args.n)))
            x = data.get_batch(idx)[0].to(args.device)
            sync()
            t0 = time.perf_counter()
            y = perturb(x, args.corruption, args.severity,
                        generator=rng.sample_generators(0, idx, args.corruption, args.severity))  # fmt: skip
            sync()
            t1 = time.perf_counter()
            with torch.inference_mode():
                model(y)
            sync()
            corrupt_s += t1 - t0
            forward_s += time.perf_counter() - t1
        return corrupt_s + forward_s

    def engine() -> float:
        t0 = time.perf_counter()
        evaluate(model, data, suite, batch_size=args.batch_size, device=args.device, amp=False)
        sync()
        return time.perf_counter() - t0

    parts(), engine()  # warm-up
    t_parts, t_engine = [], []
    for _ in range(args.repeats):
        t_parts.append(parts())
        t_engine.append(engine())
    p, e = min(t_parts), min(t_engine)
    print(
        f"{args.model}, {args.n} images at {h} px, batch {args.batch_size}, {args.corruption} s{args.severity}, "
        f"{args.device} ({torch.get_num_threads()} threads)"
    )
    print(f"{'corruption + bare forward':>26}: {p:7.2f} s")
    print(f"{'evaluate()':>26}: {e:7.2f} s")
    print(f"{'overhead':>26}: {100 * (e / p - 1):+.1f} %   (target <= +10 %)")


if __name__ == "__main__":
    main()
