"""jpeg_compression on the CPU: robustlab's codec path and its batched model against the reference, in one process.

Per image size: ``perturb(x, "jpeg_compression", 3)`` (the codec path where it applies), the batched model alone,
and the reference (``imagecorruptions``, PIL one image at a time), interleaved round by round, best of ``--rounds``.
Prints wall and CPU (process) milliseconds per image; on a shared machine the CPU time is the steadier measure of
the work, the wall time what a user waits for. The quality is the ImageNet severity 3 (15) at every size.

    ROBUSTLAB_DATA=/path/to/shared/data python benchmarks/bench_jpeg.py [--sizes 224] [--n 32] [--rounds 10]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from PIL import Image

from robustlab.perturb import perturb
from robustlab.perturb.jpeg import _roundtrip_validated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="224", help="comma list of image sizes (ImageNet crops resized)")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--data-dir", default=os.environ.get("ROBUSTLAB_DATA"))
    args = parser.parse_args()
    from imagecorruptions_ref import imagenet_crops, reference_corrupt

    if not args.data_dir:
        raise SystemExit("set ROBUSTLAB_DATA or pass --data-dir (the shared data folder)")
    crops = imagenet_crops(args.data_dir, n=args.n)
    print(f"jpeg_compression severity 3 (quality 15), batch {args.n}, {torch.get_num_threads()} threads, "
          f"best of {args.rounds} interleaved rounds, torch {torch.__version__}")  # fmt: skip
    print(f"{'size':>5} {'':<10} {'robustlab':>10} {'model':>10} {'reference':>10} {'ref / robustlab':>16}")
    for size in (int(s) for s in args.sizes.split(",")):
        imgs = crops if size == 224 else np.stack([np.asarray(Image.fromarray(c).resize((size, size))) for c in crops])
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(255).contiguous()

        def reference(imgs: np.ndarray = imgs) -> None:
            for i, im in enumerate(imgs):
                reference_corrupt(im, "jpeg_compression", 3, seed=i)

        fns = {
            "robustlab": lambda x=x: perturb(x, "jpeg_compression", 3, profile="imagenet"),
            "model": lambda x=x: _roundtrip_validated(x, 15, "floor", codec=False),
            "reference": reference,
        }
        wall = dict.fromkeys(fns, float("inf"))
        cpu = dict.fromkeys(fns, float("inf"))
        for fn in fns.values():
            fn()  # warm-up
        for _ in range(args.rounds):
            for name, fn in fns.items():
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                c1, t1 = time.process_time(), time.perf_counter()
                wall[name] = min(wall[name], (t1 - t0) / len(imgs) * 1e3)
                cpu[name] = min(cpu[name], (c1 - c0) / len(imgs) * 1e3)
        for label, d in (("wall ms", wall), ("cpu ms", cpu)):
            print(f"{size:>5} {label:<10} {d['robustlab']:10.3f} {d['model']:10.3f} {d['reference']:10.3f} "
                  f"{d['reference'] / d['robustlab']:15.2f}x")  # fmt: skip
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
