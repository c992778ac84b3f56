"""Speed of robustlab's batched corruptions against the `imagecorruptions` package, measured in the same run.

For each corruption at severity 3: robustlab corrupts a batch of N images in one call (per-sample generators,
as the evaluation engine does); the reference corrupts the same images one at a time. The table prints
milliseconds per image for both and their ratio. Targets (issue 3, 2-core CPU): the 15 test corruptions together
>= 20x faster at 224 px and >= 10x at 32 px, glass_blur >= 100x at 224 px, none slower than the reference.

    python benchmarks/bench_corruptions.py [--size 224] [--n 32] [--ref-n 8] [--device cpu] [--data-dir D]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

import robustlab  # noqa: F401
from robustlab import rng
from robustlab.perturb import ALL_CORRUPTIONS, PERTURBATIONS, TEST_CORRUPTIONS, perturb
from robustlab.runtime import tune_allocator


def _images(size: int, n: int, data_dir: str | None) -> np.ndarray:
    if data_dir:
        from imagecorruptions_ref import imagenet_crops

        if size == 224:
            return imagenet_crops(data_dir, n=n)
        npz = np.load(os.path.join(data_dir, "cifar10", "cifar10_test_exact_first932.npz"))
        if size == 32:
            return npz["images"][:n]
    rs = np.random.default_rng(0)
    return rs.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--n", type=int, default=32, help="batch size for robustlab")
    parser.add_argument("--ref-n", type=int, default=8, help="images timed for the reference (per corruption)")
    parser.add_argument("--severity", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data-dir", default=os.environ.get("ROBUSTLAB_DATA"))
    parser.add_argument("--corruptions", default="all")
    parser.add_argument(
        "--allocator",
        choices=("tuned", "system"),
        default="tuned",
        help="'tuned' applies robustlab.runtime.tune_allocator() as the robustlab CLI does; 'system' keeps glibc's",
    )
    args = parser.parse_args()
    tuned = args.allocator == "tuned" and tune_allocator()

    from imagecorruptions_ref import reference_corrupt

    names = list(ALL_CORRUPTIONS) if args.corruptions == "all" else args.corruptions.split(",")
    images = _images(args.size, max(args.n, args.ref_n), args.data_dir)
    x = torch.from_numpy(images[: args.n]).permute(0, 3, 1, 2).float().div(255).to(args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    print(
        f"{args.size} px, severity {args.severity}, robustlab batch {args.n} on {args.device} "
        f"({torch.get_num_threads()} threads, allocator {'tuned' if tuned else 'glibc default'}), "
        f"reference on {args.ref_n} single images"
    )
    print(f"{'corruption':<18} {'robustlab ms/img':>16} {'reference ms/img':>17} {'speed-up':>9}")
    totals = {"ours": 0.0, "ref": 0.0}
    for name in names:
        if name not in PERTURBATIONS:
            print(f"{name:<18} {'(not registered)':>16}")
            continue
        gens = rng.sample_generators(0, range(args.n), name, args.severity)
        perturb(x[:2], name, args.severity, generator=gens[:2])  # warm-up (kernels, caches)
        times = []
        for _ in range(3):
            gens = rng.sample_generators(0, range(args.n), name, args.severity)
            sync()
            t0 = time.perf_counter()
            perturb(x, name, args.severity, generator=gens)
            sync()
            times.append((time.perf_counter() - t0) / args.n)
        ours = min(times)
        ref_times = []
        for i in range(args.ref_n):
            t0 = time.perf_counter()
            reference_corrupt(images[i], name, args.severity, seed=i)
            ref_times.append(time.perf_counter() - t0)
        ref = statistics.mean(ref_times[1:]) if len(ref_times) > 1 else ref_times[0]
        if name in TEST_CORRUPTIONS:
            totals["ours"] += ours
            totals["ref"] += ref
        print(f"{name:<18} {ours * 1e3:16.2f} {ref * 1e3:17.2f} {ref / ours:8.1f}x")
    if totals["ours"]:
        print(
            f"{'15 test, total':<18} {totals['ours'] * 1e3:16.2f} {totals['ref'] * 1e3:17.2f} "
            f"{totals['ref'] / totals['ours']:8.1f}x"
        )


if __name__ == "__main__":
    main()
